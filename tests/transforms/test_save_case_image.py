"""A case writes all of its outputs or none: a mask is not written when the overlay that follows it would replace a
file of the user's (the case failed, yet its mask was written and recorded)."""

from __future__ import annotations

import numpy as np
import pytest
from monai.transforms import LoadImage
from PIL import Image

from unimiss_monai.data.case_names import OutputNames
from unimiss_monai.data.output_ledger import NotOursError
from unimiss_monai.transforms import SaveCaseImaged


def test_a_case_whose_overlay_name_is_a_users_file_writes_no_mask(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_overlay.png").write_bytes(b"the user's picture")
    save = SaveCaseImaged("pred", output_names=OutputNames([tmp_path / "x.png"]), output_dir=str(out), output_postfix="seg",
                          output_ext=".nii.gz", separate_folder=False, resample=False, print_log=False,
                          companions=["_overlay.png"])
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "x.png")
    pred = LoadImage(image_only=True, ensure_channel_first=True)(str(tmp_path / "x.png"))  # a mask with its metadata
    with pytest.raises(NotOursError, match="x_overlay.png"):
        save({"pred": pred})
    assert sorted(p.name for p in out.iterdir()) == ["x_overlay.png"]
    assert (out / "x_overlay.png").read_bytes() == b"the user's picture"
    (out / "x_overlay.png").unlink()  # the user moved it away: the case writes
    assert save({"pred": pred})["output"] == str(out / "x_seg.nii.gz") and (out / "x_seg.nii.gz").is_file()


def test_inputs_whose_names_hold_dots_write_one_file_each(tmp_path):
    """``a.nii.gz``, ``a.v2.nii.gz`` and ``a.v3.nii.gz`` all wrote ``a_seg.nii.gz`` (MONAI's layout drops what follows
    a stem's last dot), each over the one before, and every case recorded that one file as its output."""
    out = tmp_path / "out"
    names = ["a.png", "a.v2.png", "a.v3.png", "ct.2024.01.png"]
    for i, name in enumerate(names):
        Image.fromarray(np.full((6, 8), i, np.uint8)).save(tmp_path / name)
    save = SaveCaseImaged("pred", output_names=OutputNames([tmp_path / n for n in names]), output_dir=str(out),
                          output_postfix="seg", output_ext=".nii.gz", separate_folder=False, resample=False,
                          print_log=False)
    written = [save({"pred": LoadImage(image_only=True, ensure_channel_first=True)(str(tmp_path / n))})["output"]
               for n in names]
    assert written == [str(out / f"{n[:-len('.png')]}_seg.nii.gz") for n in names]
    for i, path in enumerate(written):  # each file holds its own case
        assert np.asarray(LoadImage(image_only=True)(path)).max() == i
