"""A case of CXR segmentation inference writes its mask and its overlay, or neither: when the overlay or the mask
itself fails to write (a full disk), the files of that case are removed (or given back the content of the earlier run
they replaced), the case is reported failed with the reason, and the other cases are whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ignite.engine import Engine
from monai.data import image_writer
from monai.transforms import Compose, LoadImage
from PIL import Image

from unimiss_monai.data.case_names import OutputNames
from unimiss_monai.data.case_outputs import case_file, one_case
from unimiss_monai.data.output_ledger import NotOursError, check_own_file
from unimiss_monai.data.writers import save_bytes
from unimiss_monai.handlers import InferenceSummary
from unimiss_monai.transforms import SaveCaseImaged, SaveOverlayPNGd, SkipFailedd
from unimiss_monai.transforms.io import dictionary as io_dictionary

CASES = ["a", "b", "c"]


def _postprocessing(out, inputs):
    names = OutputNames(inputs)
    return SkipFailedd(Compose([
        SaveCaseImaged("pred", output_names=names, output_dir=str(out), output_postfix="seg", output_ext=".nii.gz",
                       output_dtype=np.uint8, separate_folder=False, resample=False, print_log=False,
                       companions=["_overlay.png"]),
        SaveOverlayPNGd("pred", image_key="image", output_dir=out, names=["lung"], output_names=names),
    ]))


def _item(path, value):
    """The post-processing input of radiograph ``path``: its mask (``value`` rows of lung) and the image."""
    Image.fromarray(np.full((16, 12), 100, np.uint8)).save(path)
    image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))  # with the metadata a reader gives
    pred = image.clone()
    pred.zero_()
    pred[0, 2:2 + value, 3:9] = 1
    return {"pred": pred, "image": image, "case": str(path), "failed": ""}


def _run(tmp_path, value, fail_overlay_of=None, monkeypatch=None, fail_mask_of=None):
    """Post-process the three cases (masks of ``value`` rows) and summarise them, the overlay of ``fail_overlay_of``
    failing to write, or the mask of ``fail_mask_of`` failing part-way; returns the summary."""
    out, inputs = tmp_path / "out", [tmp_path / f"{c}.png" for c in CASES]
    if fail_overlay_of:
        write = io_dictionary.write_overlay_png

        def failing(path, *args, **kwargs):
            if path.name == f"{fail_overlay_of}_overlay.png":
                raise OSError(28, "No space left on device")
            return write(path, *args, **kwargs)

        monkeypatch.setattr(io_dictionary, "write_overlay_png", failing)
    if fail_mask_of:
        _fail_image_writes(monkeypatch, f"{fail_mask_of}_seg.nii.gz")
    post = _postprocessing(out, inputs)
    engine = Engine(lambda e, batch: [post(item) for item in batch])
    InferenceSummary(out).attach(engine)
    try:
        engine.run([[_item(p, value)] for p in inputs], max_epochs=1)
    except RuntimeError as err:
        assert (fail_overlay_of or fail_mask_of) and "1 of 3 cases failed" in str(err), err
    return json.loads((out / "summary.json").read_text())


def _write_part_and_fail(path):
    with open(path, "wb") as f:  # as nib.save and itk.imwrite write: in place, not through a temporary
        f.write(b"\x1f\x8b part")
    raise OSError(28, "No space left on device")


def _fail_image_writes(monkeypatch, name):
    """Each of MONAI's image writers, writing file ``name``, leaves part of it and raises ENOSPC (a full disk)."""
    for cls in (image_writer.ITKWriter, image_writer.NibabelWriter):
        def partial(self, filename, *args, _write=cls.write, **kwargs):
            if Path(filename).name == name:
                _write_part_and_fail(filename)
            return _write(self, filename, *args, **kwargs)

        monkeypatch.setattr(cls, "write", partial)


def _files(out):
    return sorted(p.name for p in out.iterdir())


def test_a_case_whose_overlay_fails_leaves_no_mask(tmp_path, monkeypatch):
    summary = _run(tmp_path, 4, "b", monkeypatch)
    out = tmp_path / "out"
    assert _files(out) == [".unimiss_monai_files", "a_overlay.png", "a_seg.nii.gz", "c_overlay.png", "c_seg.nii.gz",
                           "summary.json"]
    rows = {row["case"]: row for row in summary["cases"]}
    assert rows[str(tmp_path / "b.png")]["status"] == "failed"
    assert "No space left on device" in rows[str(tmp_path / "b.png")]["reason"]
    assert "output" not in rows[str(tmp_path / "b.png")]
    assert rows[str(tmp_path / "c.png")] == {**rows[str(tmp_path / "c.png")], "status": "ok",
                                              "output": str(out / "c_seg.nii.gz")}


def test_a_rerun_whose_overlay_fails_gives_the_case_back_as_the_earlier_run_wrote_it(tmp_path, monkeypatch):
    _run(tmp_path, 4)  # the earlier run: every case whole
    out = tmp_path / "out"
    before = {name: (out / name).read_bytes() for name in _files(out) if name[:2] in ("a_", "b_")}
    summary = _run(tmp_path, 8, "b", monkeypatch)  # other masks, and b's overlay fails
    after = {name: (out / name).read_bytes() for name in before}
    assert after["b_seg.nii.gz"] == before["b_seg.nii.gz"]  # b's mask of the earlier run, as it was
    assert after["b_overlay.png"] == before["b_overlay.png"]
    assert after["a_seg.nii.gz"] != before["a_seg.nii.gz"]  # the cases that worked were written anew
    for name in ("b_seg.nii.gz", "b_overlay.png"):
        check_own_file(out / name, out)  # still this package's own: the next run replaces it
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".unimiss_monai_files"]  # no copy left
    assert summary["num_failed"] == 1 and summary["num_ok"] == 2
    monkeypatch.undo()
    _run(tmp_path, 8)  # the disk has room again: the rerun replaces b's files
    assert (out / "b_seg.nii.gz").read_bytes() != before["b_seg.nii.gz"]


def test_one_case_undoes_only_its_own_files(tmp_path):
    out = tmp_path / "out"
    save_bytes(b"the user's", out / "x.txt")  # a file of the user's, which the case's second output would replace
    with pytest.raises(NotOursError):
        with one_case():
            with case_file(out / "new.txt", out) as path:
                save_bytes(b"new", path)
            with case_file(out / "x.txt", out) as path:
                save_bytes(b"replaced", path)
    assert not (out / "new.txt").exists() and (out / "x.txt").read_bytes() == b"the user's"
    with one_case():  # a case that works keeps its files, and no copy of what they replaced
        with case_file(out / "new.txt", out) as path:
            save_bytes(b"new", path)
        with case_file(out / "new.txt", out) as path:
            save_bytes(b"newer", path)
    assert _files(out) == [".unimiss_monai_files", "new.txt", "x.txt"]
    assert (out / "new.txt").read_bytes() == b"newer"


def test_a_write_that_fails_part_way_is_undone_with_its_case(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="No space"):
        with one_case():
            with case_file(out / "m.nii.gz", out) as path:
                _write_part_and_fail(path)
    assert not (out / "m.nii.gz").exists()  # the part written is removed, not kept as a file of this package's
    with case_file(out / "m.nii.gz", out) as path:
        save_bytes(b"the earlier run's mask", path)
    with pytest.raises(OSError, match="No space"):
        with one_case():
            with case_file(out / "m.nii.gz", out) as path:
                _write_part_and_fail(path)
    assert (out / "m.nii.gz").read_bytes() == b"the earlier run's mask"
    check_own_file(out / "m.nii.gz", out)
    assert _files(out) == [".unimiss_monai_files", "m.nii.gz"]  # no copy left


def test_a_case_whose_mask_fails_part_way_fails_alone(tmp_path, monkeypatch):
    summary = _run(tmp_path, 4, monkeypatch=monkeypatch, fail_mask_of="b")  # a full disk while the mask is written
    out = tmp_path / "out"
    assert _files(out) == [".unimiss_monai_files", "a_overlay.png", "a_seg.nii.gz", "c_overlay.png", "c_seg.nii.gz",
                           "summary.json"]
    row = {row["case"]: row for row in summary["cases"]}[str(tmp_path / "b.png")]
    assert row["status"] == "failed" and "output" not in row
    assert row["reason"].startswith("OSError: [Errno 28] No space left on device"), row["reason"]
    assert summary["num_failed"] == 1 and summary["num_ok"] == 2


def test_a_rerun_whose_mask_fails_part_way_gives_the_case_back(tmp_path, monkeypatch):
    _run(tmp_path, 4)
    out = tmp_path / "out"
    before = {name: (out / name).read_bytes() for name in ("b_seg.nii.gz", "b_overlay.png")}
    summary = _run(tmp_path, 8, monkeypatch=monkeypatch, fail_mask_of="b")
    assert {name: (out / name).read_bytes() for name in before} == before
    for name in before:
        check_own_file(out / name, out)  # still this package's own: the next run replaces it
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".unimiss_monai_files"]
    assert summary["num_failed"] == 1 and summary["num_ok"] == 2


def test_save_case_image_of_several_keys_undoes_the_keys_written(tmp_path, monkeypatch):
    out = tmp_path / "out"
    save = SaveCaseImaged(["pred", "prob"], output_dir=str(out), output_ext=".nii.gz", output_dtype=np.uint8,
                          separate_folder=False, resample=False, print_log=False)
    data = {"pred": _item(tmp_path / "a.png", 4)["pred"], "prob": _item(tmp_path / "b.png", 4)["pred"]}
    _fail_image_writes(monkeypatch, "b_trans.nii.gz")
    with pytest.raises(OSError, match="No space"):  # the writer's error, not MONAI's RuntimeError around it
        save(data)
    assert _files(out) == [".unimiss_monai_files"]  # pred's file, written first, is undone with prob's part
