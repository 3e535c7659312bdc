"""``field_of_view: ignore`` (CT classification's smoke.yaml) turns the check off: a whole CT would be classified like
a crop, so the transform says so once, when the run builds it, and not once per case."""

from __future__ import annotations

import logging

import torch
from monai.data import MetaTensor

from unimiss_monai.transforms import CheckFieldOfViewd

FIELD = (90.0, 90.0, 80.0)


def _whole_ct() -> MetaTensor:  # 360 mm across, far beyond the training field
    affine = torch.diag(torch.tensor([2.8125, 2.8125, 5.0, 1.0], dtype=torch.float64))
    return MetaTensor(torch.zeros(1, 128, 128, 64), affine=affine, meta={"filename_or_obj": "/data/ct.nii.gz"})


def _off_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "check is off" in r.getMessage()]


def test_ignore_warns_once_per_run_not_per_case(caplog):
    caplog.set_level(logging.INFO)
    check = CheckFieldOfViewd("image", FIELD, mode="ignore")
    for _ in range(3):
        out = check({"image": _whole_ct()})
        assert tuple(out["image"].shape) == (1, 128, 128, 64)
    (message,) = _off_warnings(caplog)
    assert "field_of_view is 'ignore'" in message and "--field_of_view refuse" in message and "\n" not in message


def test_the_checking_modes_do_not_warn_about_it(caplog):
    caplog.set_level(logging.INFO)
    CheckFieldOfViewd("image", FIELD, mode="refuse")
    CheckFieldOfViewd("image", FIELD, mode="centre")
    assert not _off_warnings(caplog)
