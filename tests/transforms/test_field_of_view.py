"""``CheckFieldOfView``: a volume is measured in mm (voxels x spacing) against the training field; one of that size
passes silently, one somewhat off passes with a warning, one far off is refused in one line, or cut to its centre."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from unimiss_monai.transforms import CheckFieldOfView, CheckFieldOfViewd, field_of_view_mm

FIELD = (90.0, 90.0, 80.0)  # x, y, z mm of the CT classification bundle's sample crops


def _volume(shape, spacing, name="case.nii.gz") -> MetaTensor:
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-100.0, 50.0, 20.0], dtype=torch.float64)
    return MetaTensor(torch.randn(1, *shape), affine=affine, meta={"filename_or_obj": f"/data/{name}"})


def _field_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "field of view" in str(w.message)]


def test_a_crop_of_the_training_size_passes_silently():
    crop = _volume((64, 64, 32), (1.40625, 1.40625, 2.5))
    assert field_of_view_mm(crop) == pytest.approx(FIELD)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = CheckFieldOfView(FIELD)(crop)
    assert out is crop and not _field_warnings(record)


def test_a_volume_somewhat_larger_passes_with_a_warning_naming_it():
    with pytest.warns(UserWarning, match=r"/data/wide\.nii\.gz: field of view 135 x 90 x 80 mm is 1\.5x larger"):
        out = CheckFieldOfView(FIELD)(_volume((96, 64, 32), (1.40625, 1.40625, 2.5), "wide.nii.gz"))
    assert tuple(out.shape) == (1, 96, 64, 32)


def test_a_whole_ct_is_refused_in_one_line_with_the_fix():
    whole = _volume((64, 64, 60), (5.0, 5.0, 5.0), "whole.nii.gz")  # 320 x 320 x 300 mm
    with pytest.raises(ValueError) as err:
        CheckFieldOfView(FIELD, hint="or set --field_of_view centre")(whole)
    message = str(err.value)
    assert "\n" not in message and message.startswith("/data/whole.nii.gz: field of view 320 x 320 x 300 mm")
    assert "3.8x larger than the 90 x 90 x 80 mm" in message and message.endswith("or set --field_of_view centre")


def test_a_volume_far_smaller_is_refused_too():
    with pytest.raises(ValueError, match=r"30 x 90 x 80 mm is 3\.0x smaller"):
        CheckFieldOfView(FIELD)(_volume((20, 64, 32), (1.5, 1.40625, 2.5)))


def test_centre_mode_cuts_the_central_training_field():
    whole = _volume((64, 64, 60), (5.0, 5.0, 5.0), "whole.nii.gz")
    out = CheckFieldOfViewd("image", FIELD, mode="centre")({"image": whole})["image"]
    assert tuple(out.shape) == (1, 18, 18, 16)  # 90 / 5, 90 / 5, 80 / 5 voxels
    assert field_of_view_mm(out) == pytest.approx(FIELD)
    # the cut is the middle of the volume: voxel (23, 23, 22) of the whole volume is its first voxel
    torch.testing.assert_close(out.as_tensor(), whole.as_tensor()[:, 23:41, 23:41, 22:38])
    first = np.asarray(whole.affine)[:3, 3] + 5.0 * np.array([23, 23, 22])
    np.testing.assert_allclose(np.asarray(out.affine)[:3, 3], first)


def test_centre_mode_cannot_make_a_thin_slab_deeper():
    slab = _volume((64, 64, 6), (5.0, 5.0, 5.0), "slab.nii.gz")  # 30 mm deep
    with pytest.raises(ValueError, match=r"slab\.nii\.gz: field of view 90 x 90 x 30 mm is 2\.7x smaller"):
        CheckFieldOfView(FIELD, mode="centre")(slab)


def test_no_field_turns_the_check_off_and_bad_options_are_refused():
    whole = _volume((64, 64, 60), (5.0, 5.0, 5.0))
    assert CheckFieldOfView(None)(whole) is whole
    assert CheckFieldOfView(FIELD, mode="ignore")(whole) is whole
    with pytest.raises(ValueError, match="mode must be one of"):
        CheckFieldOfView(FIELD, mode="crop")
    with pytest.raises(ValueError, match="field_mm must be positive"):
        CheckFieldOfView((90.0, 0.0, 80.0))
    with pytest.raises(ValueError, match="3 spatial axes but field_mm has 2"):
        CheckFieldOfView((90.0, 90.0))(whole)


def test_a_drr_lying_in_3d_space_has_its_extent_along_both_axes():
    # a frontal DRR's rows run along world z: the top-left 2x2 block of its affine holds almost none of that axis
    from unimiss_monai.drr import detector_affine

    row_first = detector_affine("AP", (32, 40), (2.0, 1.5), 1000.0, 600.0, np.zeros(3))
    drr = MetaTensor(torch.zeros(1, 40, 32), affine=torch.as_tensor(row_first[:, [1, 0, 2, 3]]))
    assert field_of_view_mm(drr) == pytest.approx((40 * 1.5, 32 * 2.0))
    assert CheckFieldOfView((60.0, 64.0))(drr) is drr
