"""A CT some of whose slices lie beyond any HU: one slice of a series exported with another rescale slope leaves the
volume's median where it is, so the whole-volume check passes it. Each such case fails in one line naming the slice,
through the DRR loader (``load_ct``, which reads a DICOM series in float32 so that the slice's own rescale cannot wrap
around) and the input checks of the other bundles (``check_not_air_only``); what lies beyond +-10000 in a CT that is
in HU (metal, padding) passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dicom_slopes import set_slope
from monai.data import MetaTensor

from unimiss_monai.data import CTInputError, load_ct, make_ct_phantom
from unimiss_monai.data.ct_io import check_not_air_only
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.transforms import CheckSpatialDimsd

AFFINE = np.diag([2.0, 2.0, 5.0, 1.0])


def _slab_ct() -> np.ndarray:
    """A CT whose slices hold 40 x 36 values each."""
    return make_ct_phantom((40, 36, 6), (2.0, 2.0, 5.0), seed=0, noise_hu=0).hu.astype(np.float32)


def test_one_slice_with_its_own_wrong_rescale_slope_is_refused(tmp_path):
    """ITK stacks a series in the first slice's pixel type (int16 here) and rescales each slice by its own header: a
    slope of 66 took that slice's air to -66000, which wrapped to -464 and passed as if HU. Read as float32, the slice
    keeps -66000 and fails the case, naming it; the volume's median is untouched by one slice."""
    ct = _slab_ct()
    folder = write_dicom_series(ct, AFFINE, tmp_path / "series")
    third = sorted(folder.glob("*.dcm"))[2]
    set_slope(third, 66)
    match = (rf"^{folder}: 1 of its 6 slices \(along the last axis of shape \(40, 36, 6\); index 2\) holds \d+ % of "
             r"its values beyond \+-10000, which no CT in HU reaches: that slice was exported with another rescale "
             r"slope/intercept than the rest; export the series again or drop the slice$")
    with pytest.raises(CTInputError, match=match):
        load_ct(folder)
    set_slope(third, 1)
    np.testing.assert_array_equal(load_ct(folder)[0], ct)  # the same series with one header: read as written


def test_the_slice_check_reaches_the_input_checks():
    ct = _slab_ct()
    ct[:, :, 2:4] *= 1000.0  # two slices in another unit
    image = MetaTensor(torch.from_numpy(ct)[None], affine=torch.from_numpy(AFFINE))
    image.meta["filename_or_obj"] = "slices.nii.gz"
    match = (r"^slices\.nii\.gz: 2 of its 6 slices \(along the last axis of shape \(40, 36, 6\); the first at index "
             r"2\) hold \d+ % of their values .* those slices were")
    with pytest.raises(ValueError, match=match):
        CheckSpatialDimsd("image", spatial_dims=3)({"image": image})  # the pretraining and classification input check


def test_metal_padding_and_blank_slices_beyond_any_hu_pass():
    """What lies beyond +-10000 in a CT that is in HU: an implant in a tight crop (a stem 30 voxels wide in a 48-voxel
    crop, ending inside it), the scan circle's padding at -32768 and a slice of padding where a resampled CT has no
    data. A slice in another unit is still told apart inside the padded scan circle."""
    crop = make_ct_phantom((48, 48, 64), (0.6, 0.6, 0.6), seed=0, noise_hu=0).hu.astype(np.float32)
    crop[9:39, 9:39, :40] = 25000.0
    check_not_air_only(crop, "stem_crop.nii.gz")
    padded = make_ct_phantom((64, 64, 12), (2.0, 2.0, 5.0), seed=0, noise_hu=0).hu.astype(np.float32)
    x, y = np.meshgrid(np.arange(64) - 31.5, np.arange(64) - 31.5, indexing="ij")
    padded[x**2 + y**2 > 32.0**2] = -32768.0
    padded[:, :, 0] = -32768.0
    check_not_air_only(padded, "padded.nii.gz")
    padded[:, :, 7] *= 1000.0
    with pytest.raises(CTInputError, match=r"^padded\.nii\.gz: 1 of its 12 slices .* index 7\) holds 100 % of its"):
        check_not_air_only(padded, "padded.nii.gz")
