"""A case of CXR segmentation inference writes its mask and its overlay, or neither: when the overlay fails to write,
the mask of that case is removed (or given back the content of the earlier run it replaced), the case is reported
failed with the reason, and the other cases are whole."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ignite.engine import Engine
from monai.transforms import Compose, LoadImage
from PIL import Image

from unimiss_monai.data.case_names import OutputNames
from unimiss_monai.data.case_outputs import case_file, one_case
from unimiss_monai.data.output_ledger import check_own_file
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


def _run(tmp_path, value, fail_overlay_of=None, monkeypatch=None):
    """Post-process the three cases (masks of ``value`` rows) and summarise them, the overlay of ``fail_overlay_of``
    failing to write; returns the summary."""
    out, inputs = tmp_path / "out", [tmp_path / f"{c}.png" for c in CASES]
    if fail_overlay_of:
        write = io_dictionary.write_overlay_png

        def failing(path, *args, **kwargs):
            if path.name == f"{fail_overlay_of}_overlay.png":
                raise OSError(28, "No space left on device")
            return write(path, *args, **kwargs)

        monkeypatch.setattr(io_dictionary, "write_overlay_png", failing)
    post = _postprocessing(out, inputs)
    engine = Engine(lambda e, batch: [post(item) for item in batch])
    InferenceSummary(out).attach(engine)
    try:
        engine.run([[_item(p, value)] for p in inputs], max_epochs=1)
    except RuntimeError as err:
        assert fail_overlay_of and "1 of 3 cases failed" in str(err), err
    return json.loads((out / "summary.json").read_text())


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
    save_bytes(b"the user's", out / "x.txt")  # a file of the user's beside the case's, which no case touches
    with pytest.raises(ValueError, match="second output"):
        with one_case():
            with case_file(out / "new.txt", out) as path:
                save_bytes(b"new", path)
            raise ValueError("the second output failed")
    assert not (out / "new.txt").exists() and (out / "x.txt").read_bytes() == b"the user's"
    with one_case():  # a case that works keeps its files, and no copy of what they replaced
        with case_file(out / "new.txt", out) as path:
            save_bytes(b"new", path)
        with case_file(out / "new.txt", out) as path:
            save_bytes(b"newer", path)
    assert _files(out) == [".unimiss_monai_files", "new.txt", "x.txt"]
    assert (out / "new.txt").read_bytes() == b"newer"
