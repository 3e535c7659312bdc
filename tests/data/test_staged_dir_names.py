"""Staging folders of names that extend one another (``p`` and ``p.1``, ``case`` and ``case.v2``, DICOM UID folders)
never touch each other's, and a staging folder another process removed is never made again as if nothing happened."""

from __future__ import annotations

import json

import pytest

from unimiss_monai.data.writers import OUTPUT_MARKER, save_json, staged_dir

PAIRS = [("p", "p.1"), ("case", "case.v2"), ("1.2.840.10008", "1.2.840.10008.5.1")]


@pytest.mark.parametrize("short, long", PAIRS)
def test_a_name_and_a_longer_dotted_name_staged_interleaved_both_end_complete(tmp_path, short, long):
    # two ranks of one run: one assembles `long` while the other starts (and finishes) `short`
    with staged_dir(tmp_path / long) as assembling:
        save_json({"part": 1}, assembling / "first.json")
        with staged_dir(tmp_path / short) as other:  # starting `short` clears only `short`'s own leftovers
            save_json({"part": 0}, other / "only.json")
        save_json({"part": 2}, assembling / "slabs" / "second.json")
    assert sorted(p.name for p in (tmp_path / long).rglob("*")) == sorted(
        [OUTPUT_MARKER, "first.json", "slabs", "second.json"])
    assert sorted(p.name for p in (tmp_path / short).iterdir()) == sorted([OUTPUT_MARKER, "only.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([short, long])  # no staging folder left


@pytest.mark.parametrize("short, long", PAIRS)
def test_leftovers_are_matched_by_the_exact_name(tmp_path, short, long):
    # what killed runs left for both names, in the form earlier versions (tempfile) and this one give them
    for name in (short, long):
        (tmp_path / f".{name}.k1ll3d_x.unimiss-tmp").mkdir()
        (tmp_path / f".{name}.0badc0de.unimiss-tmp").mkdir()
    with staged_dir(tmp_path / short):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [short, f".{long}.k1ll3d_x.unimiss-tmp", f".{long}.0badc0de.unimiss-tmp"])


@pytest.mark.parametrize("where", ["x.json", "slabs/x.json"])
def test_a_staging_folder_removed_meanwhile_fails_and_is_not_made_again(tmp_path, where):
    import shutil

    target = tmp_path / "p"
    with pytest.raises(FileNotFoundError, match=r"\.p\.\w+\.unimiss-tmp: this staging folder vanished"):
        with staged_dir(target) as tmp:
            save_json({}, tmp / "first.json")
            shutil.rmtree(tmp)  # another process removed it
            save_json({}, tmp / where)
    assert list(tmp_path.iterdir()) == []  # neither `p` holding only the later file nor a staging folder


def test_a_staging_folder_removed_after_its_last_write_is_not_put_in_place(tmp_path):
    import shutil

    with pytest.raises(FileNotFoundError, match="this staging folder vanished before it was complete"):
        with staged_dir(tmp_path / "p") as tmp:
            save_json({}, tmp / "first.json")
            shutil.rmtree(tmp)
    assert list(tmp_path.iterdir()) == []


def _crash_at(monkeypatch, call: int):
    """Make the ``call``-th ``os.replace`` of a folder by the writers raise, as a run killed just before it."""
    import os

    import unimiss_monai.data.writers as writers

    real, calls = os.replace, []

    def replace(src, dst):
        nonlocal calls
        calls += [src] if os.path.isdir(src) else []
        if os.path.isdir(src) and len(calls) == call:
            raise KeyboardInterrupt("killed")
        return real(src, dst)

    monkeypatch.setattr(writers.os, "replace", replace)
    return lambda: monkeypatch.setattr(writers.os, "replace", real)


@pytest.mark.parametrize("killed_before", [1, 2, 3], ids=["moving-old-aside", "renaming-new-in", "never"])
def test_a_run_killed_while_replacing_a_folder_leaves_one_whole_folder_and_the_rerun_goes_on(tmp_path, monkeypatch, killed_before):
    """The old folder is moved aside and the new one renamed in; nothing is removed between: killed before either
    rename, the next staging of that name finds the old folder whole (put back from aside), and replaces it."""
    target = tmp_path / "case"
    with staged_dir(target) as tmp:
        save_json({"run": 1}, tmp / "a.json")
    restore = _crash_at(monkeypatch, killed_before)
    try:
        with staged_dir(target) as tmp:
            save_json({"run": 2}, tmp / "a.json")
    except KeyboardInterrupt:
        assert killed_before < 3
        # an interrupted rename puts the old folder back at once (a kill -9 leaves it aside: the next test)
        assert json.loads((target / "a.json").read_text()) == {"run": 1}
    restore()
    with staged_dir(target) as tmp:  # the next run: finds a whole folder of its own, whichever it is, and replaces it
        assert (target / OUTPUT_MARKER).is_file() and (target / "a.json").is_file()
        save_json({"run": 3}, tmp / "a.json")
    assert json.loads((target / "a.json").read_text()) == {"run": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]  # no folder left aside


def test_a_folder_left_aside_after_both_renames_is_removed_and_a_missing_one_is_put_back(tmp_path):
    target = tmp_path / "case"
    with staged_dir(target) as tmp:
        save_json({"run": 1}, tmp / "a.json")
    # killed between the two renames: only the aside copy exists
    aside = tmp_path / ".case.0badc0de.unimiss-old"
    target.rename(aside)
    other = tmp_path / ".case.v2.0badc0de.unimiss-old"  # another name's: never touched
    other.mkdir()
    with staged_dir(target) as tmp:
        assert (target / "a.json").is_file() and not aside.exists()
        save_json({"run": 2}, tmp / "a.json")
    # killed after both renames: the new folder is in place and the old one still aside
    (tmp_path / ".case.0badc0df.unimiss-old").mkdir()
    with staged_dir(target):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["case", other.name])
