"""Files of the user's in an output folder are never replaced: only files this package recorded writing there are."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ignite.engine import Engine

from unimiss_monai.data.output_ledger import LEDGER_NAME, check_own_file, check_own_files, record_written, replacing_own
from unimiss_monai.data.writers import save_json


def test_only_recorded_files_are_replaceable(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("the user's")
    with pytest.raises(FileExistsError) as err:
        with replacing_own(out / "summary.json", out):
            save_json({"x": 1}, out / "summary.json")
    message = str(err.value)
    assert "\n" not in message and str(out / "summary.json") in message and "--output_dir" in message
    assert (out / "summary.json").read_text() == "the user's" and not (out / LEDGER_NAME).exists()
    # a new file is written and recorded; the rerun replaces it
    for value in (1, 2):
        with replacing_own(out / "sub" / "a.json", out):
            save_json({"x": value}, out / "sub" / "a.json")
    assert json.loads((out / "sub" / "a.json").read_text()) == {"x": 2}
    assert {line.split("\t")[0] for line in (out / LEDGER_NAME).read_text().splitlines()[1:]} == {"sub/a.json"}
    # a file outside the folder is not the folder's business; a failed write records nothing
    (tmp_path / "elsewhere.txt").write_text("x")
    assert check_own_file(tmp_path / "elsewhere.txt", out) == tmp_path / "elsewhere.txt"
    with pytest.raises(RuntimeError):
        with replacing_own(out / "b.json", out):
            raise RuntimeError("the write failed")
    lines = (out / LEDGER_NAME).read_text()
    record_written(out / "sub" / "a.json", out)  # once per content
    assert (out / LEDGER_NAME).read_text() == lines and "b.json" not in lines


def test_files_an_earlier_version_wrote_are_recorded_and_pass(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    paths = [tmp_path / "a.json", tmp_path / "absent.png"]
    with pytest.raises(FileExistsError, match="a.json exists and was not written by unimiss_monai.* --out$"):
        check_own_files(paths, tmp_path, "--out")
    assert not (tmp_path / LEDGER_NAME).exists()
    check_own_files(paths, tmp_path, "--out", written_earlier=True)  # recorded: only the file present
    assert [line.split("\t")[0] for line in (tmp_path / LEDGER_NAME).read_text().splitlines()[1:]] == ["a.json"]
    check_own_files(paths, tmp_path)  # and from now on it is this package's


def test_classification_report_leaves_a_users_picture_and_writes_nothing(tmp_path):
    from unimiss_monai.handlers import ClassificationReport, write_report

    (tmp_path / "roc.png").write_bytes(b"the user's picture")
    probs, labels = np.array([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 1])
    with pytest.raises(FileExistsError, match="roc.png exists and was not written by unimiss_monai"):
        write_report(tmp_path, probs, labels, ["a", "b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roc.png"]  # nothing half-written beside it
    # the handler refuses at the start of the run, before any case
    engine = Engine(lambda e, b: b)
    ClassificationReport(tmp_path, ["a", "b"]).attach(engine)
    with pytest.raises(FileExistsError, match="roc.png"):
        engine.run([{"pred": [], "label": []}], max_epochs=1)
    (tmp_path / "roc.png").unlink()
    for _ in range(2):  # its own files: replaced by the rerun
        write_report(tmp_path, probs, labels, ["a", "b"])
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_inference_summary_refuses_a_users_summary_before_the_first_case(tmp_path):
    from unimiss_monai.handlers import InferenceSummary

    (tmp_path / "summary.json").write_text("{}")
    seen = []
    engine = Engine(lambda e, b: seen.append(b))
    InferenceSummary(tmp_path).attach(engine)
    with pytest.raises(FileExistsError, match="summary.json exists and was not written by unimiss_monai"):
        engine.run([{"case": ["a"], "failed": [""]}], max_epochs=1)
    assert seen == [] and (tmp_path / "summary.json").read_text() == "{}"


def test_a_file_changed_after_it_was_written_is_the_users(tmp_path):
    """A segmentation corrected in a viewer and saved in place is not replaced by a rerun; a copy of the folder
    (same content, other times) and a file recorded by an earlier version (no signature) still are."""
    import os
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    with replacing_own(out / "case_seg.nii.gz", out):
        (out / "case_seg.nii.gz").write_bytes(b"model output")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # new modification times, same content
    os.utime(copy / "case_seg.nii.gz", ns=(1, 1))
    check_own_file(copy / "case_seg.nii.gz", copy)
    for edit in (b"corrected by hand", b"model outpuT"):  # another size; the same size
        (out / "case_seg.nii.gz").write_bytes(edit)
        with pytest.raises(FileExistsError) as err:
            with replacing_own(out / "case_seg.nii.gz", out, "--output_dir"):
                (out / "case_seg.nii.gz").write_bytes(b"new model output")
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{out / 'case_seg.nii.gz'} was changed after unimiss_monai")
        assert message.endswith("--output_dir") and err.value.naming("--out").flag == "--out"
        assert (out / "case_seg.nii.gz").read_bytes() == edit
    # a run killed between its write and the record leaves its own file replaceable, not a file that looks edited
    (out / "case_seg.nii.gz").unlink()
    with replacing_own(out / "case_seg.nii.gz", out):
        (out / "case_seg.nii.gz").write_bytes(b"model output")
    killed = replacing_own(out / "case_seg.nii.gz", out)
    killed.__enter__()
    (out / "case_seg.nii.gz").write_bytes(b"the killed run's output")  # and no record: the process is gone
    check_own_file(out / "case_seg.nii.gz", out)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / LEDGER_NAME).write_text("# header\nseg.nii.gz\n")  # an earlier version's record
    (tmp_path / "old" / "seg.nii.gz").write_bytes(b"anything")
    with replacing_own(tmp_path / "old" / "seg.nii.gz", tmp_path / "old"):
        (tmp_path / "old" / "seg.nii.gz").write_bytes(b"rewritten")
    check_own_file(tmp_path / "old" / "seg.nii.gz", tmp_path / "old")  # and now recorded with its signature
    (tmp_path / "old" / "seg.nii.gz").write_bytes(b"edited")
    with pytest.raises(FileExistsError, match="was changed after"):
        check_own_file(tmp_path / "old" / "seg.nii.gz", tmp_path / "old")


def test_a_recorded_file_edited_in_the_packages_own_format_is_not_adopted_again(tmp_path):
    """Adoption by content is for files an earlier version wrote without a record: a recorded file edited since stays
    the user's, whatever its format."""
    with replacing_own(tmp_path / "curves.json", tmp_path):
        save_json({"loss": [[1, 2.0]]}, tmp_path / "curves.json")
    save_json({"loss": [[1, 0.5]]}, tmp_path / "curves.json")  # edited, still in the format
    with pytest.raises(FileExistsError, match="curves.json was changed after unimiss_monai wrote it"):
        check_own_files([tmp_path / "curves.json"], tmp_path, written_earlier=True)


def test_a_report_stopped_part_way_leaves_its_files_its_own(tmp_path, monkeypatch):
    """A write that fails after some of the report's files were replaced: the rerun replaces them all."""
    from unimiss_monai.handlers import classification_report, write_report

    probs, labels = np.array([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 1])
    write_report(tmp_path, probs, labels, ["a", "b"], names=["x", "y"])
    real, calls = classification_report.save_bytes, []

    def fails_third(content, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(content, path)

    monkeypatch.setattr(classification_report, "save_bytes", fails_third)
    with pytest.raises(KeyboardInterrupt):
        write_report(tmp_path, probs[::-1], labels[::-1], ["a", "b"], names=["y", "x"])
    monkeypatch.setattr(classification_report, "save_bytes", real)
    write_report(tmp_path, probs, labels, ["a", "b"], names=["x", "y"])
    assert (tmp_path / "evaluation_predictions.csv").read_text().splitlines()[1].startswith("x,")


def test_the_names_read_are_a_read_only_snapshot_that_later_records_leave_as_it_was(tmp_path):
    from unimiss_monai.data.output_ledger import written_here

    for name in ("a.json", "b.json"):
        save_json({}, tmp_path / name)
    record_written(tmp_path / "a.json", tmp_path)
    before = written_here(tmp_path)
    with pytest.raises(TypeError):
        before["b.json"] = None  # the cache's own mapping: read-only
    for _ in before:  # iterating it while recording does not change it
        record_written(tmp_path / "b.json", tmp_path)
    assert list(before) == ["a.json"] and list(written_here(tmp_path)) == ["a.json", "b.json"]
    assert written_here(tmp_path) is not before and dict(written_here(tmp_path)) == dict(written_here(tmp_path))


def test_a_ledger_written_anew_in_place_is_read_whole(tmp_path):
    from unimiss_monai.data.output_ledger import written_here

    for name in ("old_a.json", "old_b.json"):
        save_json({}, tmp_path / name)
        record_written(tmp_path / name, tmp_path)
    assert set(written_here(tmp_path)) == {"old_a.json", "old_b.json"}
    ledger = tmp_path / LEDGER_NAME
    inode = ledger.stat().st_ino
    # the same inode, longer than what was read: what a deleted ledger's successor may look like
    ledger.write_text("".join(f"new_{i:03d}.json\n" for i in range(40)))
    assert ledger.stat().st_ino == inode
    assert list(written_here(tmp_path)) == [f"new_{i:03d}.json" for i in range(40)]
