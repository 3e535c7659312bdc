"""The one-line reason of a failed inference case says the fix where a reader's own words say only what broke (``not a
gzip file``), and gives none that would mislead: not for a file that is gone, nor for a failure after loading."""

from __future__ import annotations

import numpy as np
from monai.transforms import Compose, EnsureChannelFirstd, Lambdad, LoadImaged

from unimiss_monai.data import image_formats, save_nifti
from unimiss_monai.data.tolerant import FAILED_KEY, TolerantDataset
from unimiss_monai.transforms import CheckSegmentationInputd

INTACT = "it cannot be read as an image: replace it with an intact copy or drop the case"


def _reasons(items, transform) -> list[str]:
    return [item[FAILED_KEY] for item in TolerantDataset(items, transform, placeholder_shape=(1, 4, 4))]


def _fail_after_loading(_):
    raise RuntimeError("out of something")


def test_a_reader_failure_gets_the_fix_and_other_failures_do_not(tmp_path, monkeypatch):
    (tmp_path / "text.nii.gz").write_bytes(b"this is a text file, not an image")
    save_nifti(np.ones((4, 4), np.float32), np.eye(4), tmp_path / "good.nii.gz")
    broken, gone, good = (str(tmp_path / n) for n in ("text.nii.gz", "gone.nii.gz", "good.nii.gz"))
    reasons = _reasons([{"image": broken}, {"image": gone}, {"image": good}], LoadImaged("image"))
    # a damaged file is said to be so, in one line of its own: not the reader's words ("not a gzip file")
    assert reasons[0].startswith(f"{broken}: is not a readable NIfTI file: it is not gzip-compressed"), reasons[0]
    assert reasons[0].endswith("or export it again") and "Error" not in reasons[0], reasons[0]
    assert reasons[1] and INTACT not in reasons[1], reasons[1]  # the reader says it is missing: that is the fix
    assert reasons[2] == ""
    # where nothing wrong is found in the file (a reader's own limit), the reader's words stand, with the fix
    monkeypatch.setattr(image_formats, "unreadable_image_problem", lambda path: None)
    [words] = _reasons([{"image": broken}], LoadImaged("image"))
    assert broken in words and words.endswith(f"; {INTACT}"), words
    later = _reasons([{"image": good}], Compose([LoadImaged("image"), Lambdad("image", _fail_after_loading)]))
    assert later == [f"{good}: RuntimeError: out of something"]


def test_a_case_failed_by_its_label_names_the_label_once_and_the_fix(tmp_path):
    # evaluation: the label does not fit its image; the check's own line names the label and the fix, and neither the
    # image path in front nor the exception's type in between would help
    image, label = str(tmp_path / "image.nii.gz"), str(tmp_path / "label.nii.gz")
    save_nifti(np.arange(64, dtype=np.float32).reshape(8, 8), np.eye(4), image)
    save_nifti(np.zeros((8, 9), np.float32), np.eye(4), label)
    keys = ("image", "label")
    transform = Compose([LoadImaged(keys), EnsureChannelFirstd(keys), CheckSegmentationInputd(keys, spatial_dims=2)])
    [reason] = _reasons([{"image": image, "label": label}], transform)
    assert reason.startswith(f"{label}: label grid (8, 9) differs from image grid (8, 8) ("), reason
    assert reason.endswith("; resample the label onto the image") and reason.count(label) == 1
    assert "Error" not in reason and "\n" not in reason
    # a failure this package did not foresee keeps its type, after the case it struck
    unforeseen = Compose([LoadImaged(keys), Lambdad("image", _fail_after_loading)])
    [reason] = _reasons([{"image": image, "label": label}], unforeseen)
    assert reason == f"{image}: RuntimeError: out of something"
