"""DRRGenerator reruns and several ranks: finished CTs skipped and changed or incomplete ones rendered again, a run
killed midway or a case whose files vanish leaving nothing half-done, a user's files refused and kept, and the
collectives, sample CT and progress bar of a multi-rank run."""

from __future__ import annotations

import json

import pytest
from drr_phantoms import SMALL, as_an_earlier_version_wrote
from drr_phantoms import phantom_case as _phantom_case

from unimiss_monai.engines import DRRGenerationError, DRRGenerator


def test_rerun_skips_finished_cases_and_redoes_changed_or_incomplete_ones(tmp_path, caplog):
    data, out = tmp_path / "data", tmp_path / "out"
    for name in ("a", "b"):
        _phantom_case(data, name, labels=False)
    first = DRRGenerator(data, out, **SMALL).run()
    record = json.loads((out / "a" / "a_done.json").read_text())
    assert record["testing"] == [item for item in first["testing"] if item["name"] == "a"]

    def mtimes(name):
        return {p.name: p.stat().st_mtime_ns for p in (out / name).iterdir()}

    before = {name: mtimes(name) for name in ("a", "b")}
    caplog.set_level("INFO", logger="unimiss_monai.engines")  # the engine and its done records
    assert DRRGenerator(data, out, **SMALL).run() == first
    assert {name: mtimes(name) for name in ("a", "b")} == before
    assert "0 of 2 CT(s) to render here, 2 already finished" in caplog.text
    assert "2 of 2 CT(s) done in" in caplog.text and "(0 rendered now, 2 finished by an earlier run)" in caplog.text

    (out / "b" / "b_AP.png").unlink()  # a listed output gone: b is not finished any more
    caplog.clear()
    assert DRRGenerator(data, out, **SMALL).run() == first
    assert mtimes("a") == before["a"] and (out / "b" / "b_AP.png").is_file()
    assert "b rendered in" in caplog.text and "a rendered in" not in caplog.text
    assert "(1 rendered now, 1 finished by an earlier run)" in caplog.text

    # other settings: nothing reused, and the outputs follow the new settings
    run = DRRGenerator(data, out, **{**SMALL, "views": ["PA"]}).run()
    assert [item["view"] for item in run["testing"]] == ["PA", "PA"] and not (out / "a" / "a_AP.nii.gz").exists()

    # a note of the user's inside a case folder: that case is not re-rendered over it, the other one is
    (out / "a" / "my_notes.txt").write_text("keep me")
    with pytest.raises(DRRGenerationError) as err:
        DRRGenerator(data, out, **SMALL).run()
    assert "1 of 2 CT(s) failed" in str(err.value) and "my_notes.txt" in str(err.value)
    failures = json.loads((out / "datalist.json").read_text())["failures"]
    assert len(failures) == 1 and "my_notes.txt was not written by unimiss_monai" in str(failures[0])
    assert (out / "a" / "my_notes.txt").read_text() == "keep me" and (out / "a" / "a_PA.nii.gz").is_file()
    assert (out / "b" / "b_AP.nii.gz").is_file()


def test_lateral_views_rendered_before_the_detector_side_hanging_are_rendered_again(tmp_path, caplog):
    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "a", labels=False)
    ap_only = {**SMALL, "views": ["AP"]}
    DRRGenerator(data, out / "lateral", **SMALL).run()
    DRRGenerator(data, out / "ap", **ap_only).run()
    for folder in ("lateral", "ap"):  # done records as the bundle wrote them before laterals were mirrored
        path = out / folder / "a" / "a_done.json"
        record = json.loads(path.read_text())
        record["settings"].pop("lateral_hanging", None)
        path.write_text(json.dumps(record))
        as_an_earlier_version_wrote(path.parent)
    caplog.set_level("INFO", logger="unimiss_monai.engines")  # the engine and its done records
    DRRGenerator(data, out / "lateral", **SMALL).run()
    assert "a: rendered with other settings" in caplog.text
    caplog.clear()
    DRRGenerator(data, out / "ap", **ap_only).run()  # nothing mirrored there: the older record still holds
    assert "1 already finished" in caplog.text and "other settings" not in caplog.text


def test_only_rank_zero_writes_the_sample_ct(tmp_path, monkeypatch):
    # under torchrun every rank asks for the sample CT; the phantom that stands in for it is written once
    import unimiss_monai.data.sample_sets.drr_generation as sample_set
    import unimiss_monai.engines.drr_generation as engine
    from unimiss_monai.data.ct_inputs import CTCase

    written, from_rank_zero = [], CTCase("phantom_chest", tmp_path / "out" / ".sample_ct" / "phantom_chest.nii.gz")
    monkeypatch.setattr(sample_set, "sample_ct_case", lambda scratch: written.append(scratch) or from_rank_zero)
    monkeypatch.setattr(engine, "broadcast_object", lambda value, group=None: from_rank_zero)
    generator = DRRGenerator(None, tmp_path / "out", **SMALL)
    monkeypatch.setattr(engine, "rank_and_world", lambda: (1, 2))
    assert generator.cases() == [from_rank_zero] and written == []
    monkeypatch.setattr(engine, "rank_and_world", lambda: (0, 2))
    assert generator.cases() == [from_rank_zero] and written == [tmp_path / "out" / ".sample_ct"]


class _Stop(BaseException):
    """Stands for a kill: no ``except Exception`` of the engine catches it."""


def test_another_rank_starting_a_shorter_name_leaves_this_case_whole(tmp_path, monkeypatch):
    # p.1 is being written while another rank starts p: p's cleanup of its own leftovers must not touch p.1's
    from unimiss_monai.data.writers import staged_dir

    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "p.1", labels=False)
    render_whole = DRRGenerator._render_whole

    def then_rank_one_starts_p(self, case, *args):
        entry = render_whole(self, case, *args)  # the DRRs are in p.1's staging folder; its JSONs are not yet
        with pytest.raises(_Stop):
            with staged_dir(out / "p"):  # p's CT fails at once: only its start matters here
                raise _Stop
        return entry

    monkeypatch.setattr(DRRGenerator, "_render_whole", then_rank_one_starts_p)
    run = DRRGenerator(data, out, **SMALL).run()
    record = json.loads((out / "p.1" / "p.1_done.json").read_text())
    assert run["failures"] == [] and record["testing"] == run["testing"] and len(run["testing"]) == 2
    assert all((out / item[key]).is_file() for item in run["testing"] for key in ("image", "preview"))


def test_a_case_whose_staged_files_vanish_fails_and_is_not_put_in_place(tmp_path, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "a", labels=False)
    render_whole = DRRGenerator._render_whole

    def and_one_file_is_removed(self, case, *args):
        entry = render_whole(self, case, *args)
        entry["testing"][1]["image"].unlink()  # by another process
        return entry

    monkeypatch.setattr(DRRGenerator, "_render_whole", and_one_file_is_removed)
    with pytest.raises(DRRGenerationError, match=r"a_LAT_LEFT.nii.gz: 1 file\(s\) of this CT vanished"):
        DRRGenerator(data, out, **SMALL).run()
    assert sorted(p.name for p in out.iterdir()) == ["datalist.json"]  # no folder `a` that a rerun would skip
    assert json.loads((out / "datalist.json").read_text())["testing"] == []


def test_a_rerun_killed_midway_leaves_no_datalist_of_the_run_before(tmp_path, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "out"
    for name in ("a", "b"):
        _phantom_case(data, name, labels=False)
    DRRGenerator(data, out, **SMALL).run()
    assert (out / "datalist.json").is_file()
    process = DRRGenerator._process

    def killed_at_b(self, case, *args):
        if case.name == "b":
            raise _Stop
        return process(self, case, *args)

    monkeypatch.setattr(DRRGenerator, "_process", killed_at_b)
    with pytest.raises(_Stop):  # new settings: a is replaced, then the run is killed
        DRRGenerator(data, out, **{**SMALL, "views": ["PA"]}).run()
    assert (out / "a" / "a_PA.nii.gz").is_file() and not (out / "a" / "a_AP.nii.gz").exists()
    assert not (out / "datalist.json").exists()  # it listed a's AP files, gone now
    monkeypatch.setattr(DRRGenerator, "_process", process)
    run = DRRGenerator(data, out, **{**SMALL, "views": ["PA"]}).run()  # finished: a datalist again
    assert json.loads((out / "datalist.json").read_text()) == run and len(run["testing"]) == 2


def test_a_datalist_of_the_users_in_output_dir_is_refused_and_kept(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "a", labels=False)
    out.mkdir()
    mine = '{"training": [{"image": "scan.nii.gz"}]}'
    (out / "datalist.json").write_text(mine)
    with pytest.raises(FileExistsError, match=r"datalist.json was not written by unimiss_monai.*move it away"):
        DRRGenerator(data, out, **SMALL).run()
    assert (out / "datalist.json").read_text() == mine and sorted(p.name for p in out.iterdir()) == ["datalist.json"]


def test_a_datalist_of_the_run_edited_is_said_to_be_and_kept(tmp_path):
    # an 'xray' section added for pretraining: the run's own file, edited, is told as such and not replaced
    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "a", labels=False)
    DRRGenerator(data, out, **SMALL).run()
    edited = json.dumps({**json.loads((out / "datalist.json").read_text()), "xray": [{"image": "chest.png"}]})
    (out / "datalist.json").write_text(edited)
    with pytest.raises(FileExistsError, match=r"datalist.json holds keys unimiss_monai does not write there \('xray': "
                                              r"an edit of yours\?\) and would be replaced: move it away \(a copy"):
        DRRGenerator(data, out, **SMALL).run()
    assert (out / "datalist.json").read_text() == edited


def test_every_collective_goes_over_the_coordination_group(tmp_path, monkeypatch):
    # the gathers wait for the slowest rank's whole share: over the long-timeout group, never the default (NCCL) one
    import unimiss_monai.engines.drr_generation as engine

    _phantom_case(tmp_path / "data", "a", labels=False)
    group, used = object(), []
    monkeypatch.setattr(engine, "coordination_group", lambda: group)
    monkeypatch.setattr(engine, "broadcast_object", lambda value, group=None: used.append(group) or value)
    monkeypatch.setattr(engine, "gather_objects", lambda items, group=None: used.append(group) or list(items))
    DRRGenerator(tmp_path / "data", tmp_path / "out", **SMALL).run()
    assert len(used) == 3 and all(g is group for g in used)


def test_the_progress_bar_sits_on_the_line_of_the_local_rank(tmp_path, monkeypatch):
    # rank 1 of two one-process nodes is the only process on its machine: its bar goes on the first line there
    import unimiss_monai.engines.drr_generation as engine

    _phantom_case(tmp_path / "data", "a", labels=False)
    positions = []

    def bar(*args, **kwargs):
        positions.append(kwargs.get("position"))
        raise _Stop

    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(engine, "rank_and_world", lambda: (1, 2))
    monkeypatch.setattr(engine, "share_cpu_threads", lambda: None, raising=False)
    monkeypatch.setattr(engine, "broadcast_object", lambda value, group=None: ["a"])  # rank 0's list of CTs to do
    monkeypatch.setattr(engine, "tqdm", bar)
    with pytest.raises(_Stop):
        DRRGenerator(tmp_path / "data", tmp_path / "out", **SMALL).run()
    assert positions == [0]


def test_a_ct_or_label_map_replaced_in_place_is_rendered_again(tmp_path, caplog):
    import shutil

    import nibabel as nib
    import numpy as np

    data, out, spare = tmp_path / "data", tmp_path / "out", tmp_path / "spare"
    for name in ("a", "b"):
        _phantom_case(data, name)
    _phantom_case(spare, "a")  # files of the same content, written later
    DRRGenerator(data, out, **SMALL).run()
    record = json.loads((out / "a" / "a_done.json").read_text())
    assert len(record["inputs"]) == 3 and all(isinstance(v, list) for v in record["inputs"])  # CT, labels, names

    def ap(name):
        return np.asanyarray(nib.load(str(out / name / f"{name}_AP.nii.gz")).dataobj).copy()

    before = ap("a")
    ct = nib.load(str(data / "a.nii.gz"))
    brighter = np.asanyarray(ct.dataobj).astype(np.float32) + 200.0  # a corrected CT written over the old file
    nib.save(nib.Nifti1Image(brighter, ct.affine), str(data / "a.nii.gz"))
    caplog.set_level("INFO", logger="unimiss_monai.engines")
    caplog.clear()  # the first run's lines too, where an earlier test left the root logger at INFO
    DRRGenerator(data, out, **SMALL).run()
    assert "a: its CT or label map changed since it was rendered, rendering it again" in caplog.text
    assert "a rendered in" in caplog.text and "b rendered in" not in caplog.text
    assert ap("a").sum() > before.sum()  # the DRR of the new CT, not the one kept from before

    caplog.clear()
    shutil.copy(spare / "a_labels.nii.gz", data / "b_labels.nii.gz")  # only b's label map replaced (by its equal)
    DRRGenerator(data, out, **SMALL).run()
    assert "b rendered in" in caplog.text and "a rendered in" not in caplog.text

    caplog.clear()  # nothing changed since: both skipped; a record from before the signatures were kept is taken
    del record["inputs"]
    (out / "a" / "a_done.json").write_text(json.dumps(record))
    DRRGenerator(data, out, **SMALL).run()
    assert "0 of 2 CT(s) to render here, 2 already finished" in caplog.text


def test_a_rerun_naming_the_data_from_another_folder_skips_what_is_done(tmp_path, monkeypatch, caplog):
    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "a", labels=False)
    monkeypatch.chdir(tmp_path)
    first = DRRGenerator("data", out, **SMALL).run()  # relative to the working folder
    assert first["testing"][0]["ct"] == str(data / "a.nii.gz")  # the source CT by its absolute path, wherever run from
    record = json.loads((out / "a" / "a_done.json").read_text())
    assert record["settings"]["ct"] == str(data / "a.nii.gz") and record["settings"]["labels"] is None
    caplog.set_level("INFO", logger="unimiss_monai.engines")
    caplog.clear()
    monkeypatch.chdir(out)
    DRRGenerator(data, out, **SMALL).run()
    assert "1 already finished" in caplog.text
    # a record of an earlier version: the path as typed, "None" for no labels; read from the folder it was typed in
    record["settings"].update(ct="data/a.nii.gz", labels="None")
    (out / "a" / "a_done.json").write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)
    caplog.clear()
    DRRGenerator(data, out, **SMALL).run()
    assert "1 already finished" in caplog.text


def test_a_view_named_twice_or_a_missing_cuda_device_is_refused_up_front(tmp_path, monkeypatch):
    import torch

    _phantom_case(tmp_path / "data", "a", labels=False)
    with pytest.raises(ValueError, match=r"^views: AP given more than once; name each view once$"):
        DRRGenerator(tmp_path / "data", tmp_path / "out", **{**SMALL, "views": ["AP", "PA", "ap"]})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device: cuda:0 asked for, but this PyTorch sees no CUDA device; pass "):
        DRRGenerator(tmp_path / "data", tmp_path / "out", **{**SMALL, "device": "cuda:0"})
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_record_without_signatures_is_stale_once_an_input_is_written_after_it(tmp_path, caplog):
    import os

    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "a", labels=False)
    DRRGenerator(data, out, **SMALL).run()
    path = out / "a" / "a_done.json"
    record = json.loads(path.read_text())
    del record["inputs"]
    path.write_text(json.dumps(record))
    os.utime(path, ns=(1, 1))  # written long before the CT
    as_an_earlier_version_wrote(path.parent)
    caplog.set_level("INFO", logger="unimiss_monai.engines")
    caplog.clear()
    DRRGenerator(data, out, **SMALL).run()
    assert "a: its CT or label map changed since it was rendered" in caplog.text


def test_a_datalist_file_guards_its_folder_and_bad_devices_are_one_line(tmp_path):
    data = tmp_path / "data"
    _phantom_case(data / "cts", "a", labels=False)
    (data / "list.json").write_text(json.dumps({"testing": [{"image": "cts/a.nii.gz"}]}))
    with pytest.raises(ValueError, match=r"^output_dir .* overlaps the input folder"):
        DRRGenerator(data / "list.json", data / "cts", **SMALL)  # the next scan of cts/ would read the DRRs as CTs
    for device in ("gpu", "cuda:x", "mps"):
        with pytest.raises(ValueError, match=rf"^device: '{device}' is not a device to render on; pass --device cpu"):
            DRRGenerator(data / "list.json", tmp_path / "out", **{**SMALL, "device": device})
    run = DRRGenerator(data / "list.json", tmp_path / "out", **SMALL).run()
    assert {item["ct"] for item in run["testing"]} == {str(data / "cts" / "a.nii.gz")}


def test_a_detached_header_ct_is_rendered_again_when_its_data_file_changes(tmp_path, caplog):
    import numpy as np

    from unimiss_monai.engines.drr_done_records import input_signature

    data, out = tmp_path / "data", tmp_path / "out"
    p = _phantom_case(tmp_path / "nifti", "a", labels=False)
    data.mkdir()
    spacing = np.linalg.norm(p.affine[:3, :3], axis=0)
    # MetaImage: x fastest, as the phantom's voxels in Fortran order; its voxels live in a.raw beside the header
    header = (f"ObjectType = Image\nNDims = 3\nDimSize = {' '.join(map(str, p.hu.shape))}\nElementSpacing = "
              f"{' '.join(f'{s:g}' for s in spacing)}\nElementType = MET_FLOAT\nElementDataFile = a.raw\n")
    (data / "a.mhd").write_text(header)
    np.asarray(p.hu, np.float32).ravel(order="F").tofile(data / "a.raw")
    (data / "list.json").write_text(json.dumps({"testing": [{"image": "a.mhd"}]}))
    DRRGenerator(data / "list.json", out, **SMALL).run()
    caplog.set_level("INFO", logger="unimiss_monai.engines")
    caplog.clear()
    (np.asarray(p.hu, np.float32).ravel(order="F") + 200.0).tofile(data / "a.raw")  # the header is untouched
    DRRGenerator(data / "list.json", out, **SMALL).run()
    assert "a: its CT or label map changed since it was rendered, rendering it again" in caplog.text

    # a numbered list of slices: every file beside the header counts; a header holding its voxels: only itself
    (data / "a.mhd").write_text(header.replace("ElementDataFile = a.raw", "ElementDataFile = LIST 2D\nslice0.raw"))
    listed = input_signature([data / "a.mhd"])
    (data / "slice0.raw").write_bytes(b"\0" * 8)
    assert input_signature([data / "a.mhd"]) != listed
    (data / "a.mhd").write_text(header.replace("a.raw", "LOCAL"))
    local = input_signature([data / "a.mhd"])
    (data / "slice0.raw").write_bytes(b"\1" * 9)
    assert input_signature([data / "a.mhd"]) == local and len(local[0]) == 3


def test_two_runs_into_one_output_folder_at_once_both_finish_it_whole(tmp_path, monkeypatch):
    # a second run over the same CTs starts while the first is rendering a: its cleanup of a's leftovers must leave
    # the first run's live staging folder alone (it used to remove it, and the first run failed)
    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "a", labels=False)
    render_whole, second = DRRGenerator._render_whole, {}

    def while_another_run_renders_a(self, case, *args):
        entry = render_whole(self, case, *args)  # the DRRs are in a's staging folder; its JSONs are not yet
        if "started" not in second:  # the second run renders a too, but starts no third
            second["started"] = True
            second["run"] = DRRGenerator(data, out, **SMALL).run()
        return entry

    monkeypatch.setattr(DRRGenerator, "_render_whole", while_another_run_renders_a)
    first = DRRGenerator(data, out, **SMALL).run()
    assert first["failures"] == second["run"]["failures"] == [] and first["testing"] == second["run"]["testing"]
    assert all((out / item[key]).is_file() for item in first["testing"] for key in ("image", "preview"))
    assert sorted(p.name for p in out.iterdir()) == ["a", "datalist.json"]  # no staging folder left
