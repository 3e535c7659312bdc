"""A CT on another scale (HU x 10) or with slices shifted by a rescale intercept of their own passed every check of
its values and was rendered and segmented, marked ok: both are refused in one line naming the file; a CT in HU, its
padding, and a crop inside the body whose slices change from lung to liver pass."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from unimiss_monai.data import load_ct
from unimiss_monai.data.ct_io import CTInputError, check_not_air_only
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.phantom import make_ct_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_ct_phantom((48, 40, 24))


@pytest.mark.parametrize("padding", [-2048, -3024, -32768])
def test_a_ct_in_hu_with_its_padding_passes_resampled_or_not(phantom, padding):
    """Padding outside the scan circle is one value below air; resampled with cubic interpolation (scipy's zoom,
    SimpleITK's B-spline) it rings around that value, below it too, and a few voxels are the lowest of all."""
    from scipy.ndimage import zoom

    hu = phantom.hu.copy()
    check_not_air_only(hu, "ct.nii.gz")
    xx, yy = np.meshgrid(np.arange(48) - 23.5, np.arange(40) - 19.5, indexing="ij")
    hu[(xx / 24) ** 2 + (yy / 20) ** 2 > 1] = padding
    check_not_air_only(hu, "ct.nii.gz")
    resampled = zoom(hu, (1.5, 1.5, 1.0), order=3)
    assert np.count_nonzero(resampled == resampled.min()) == 1  # the lowest value is an undershoot, seen once
    check_not_air_only(resampled.astype(np.float32), "ct.nii.gz")
    check_not_air_only(np.rint(resampled).astype(np.int32), "ct.nii.gz")
    hu[(xx / 24) ** 2 + (yy / 20) ** 2 > 1] = -6000  # one padding value inside the band where scaled air lands
    check_not_air_only(hu, "ct.nii.gz")


def test_a_crop_inside_an_organ_padded_past_the_scans_end_passes():
    """The slices a crop runs past the scan are padding, one value each: no slice of the body, shifted or not;
    resampled along the slices, one slice blends body and padding, its levels all moved, its spread narrowed."""
    from scipy.ndimage import zoom

    crop = np.random.default_rng(2).normal(100, 20, (32, 32, 24)).astype(np.float32)
    for padding in (-1024, -2048, -3024, -32768):
        crop[:, :, 18:] = padding
        check_not_air_only(crop, "crop.nii.gz")
        for factor, order in ((1.5, 1), (2.0, 3)) if padding > -10000 else ():  # -32768 blended: beyond any HU
            check_not_air_only(zoom(crop, (1, 1, factor), order=order), "crop.nii.gz")


def test_a_ct_on_another_scale_is_refused(phantom):
    with pytest.raises(CTInputError, match=r"^ct\.nii\.gz: \d+ % of its values lie between -15000 and -4000, far "
                                           r"under air \(-1000 HU\), where no tissue is: not in HU \(a scaled export, "
                                           r"e\.g\. HU x 10\?\); rewrite it in HU"):
        check_not_air_only(phantom.hu * 10, "ct.nii.gz")


@pytest.mark.parametrize("shifted", [slice(10, 11), slice(10, None)], ids=["one slice", "from a slice on"])
def test_slices_shifted_by_an_intercept_of_their_own_are_refused(phantom, shifted):
    hu = phantom.hu.copy()
    hu[:, :, shifted] += 1024
    with pytest.raises(CTInputError, match=r"^ct\.nii\.gz: from slice 9 to slice 10 \(along the last axis of "
                                           r"shape \(48, 40, 24\)\) every level of the slice \(its air, median and "
                                           r"brightest\) moves by about \+10\d\d HU, as from a rescale intercept"):
        check_not_air_only(hu, "ct.nii.gz")


def test_a_crop_inside_the_body_from_lung_to_liver_passes():
    """Without air around the body, one slice of lung beside one of liver moves every level alike: not checked."""
    rng = np.random.default_rng(0)
    crop = np.concatenate([rng.normal(-850, 30, (32, 32, 8)), rng.normal(50, 15, (32, 32, 8))], axis=2)
    check_not_air_only(crop.astype(np.float32), "crop.nii.gz")


def test_a_dicom_slice_with_a_wrong_intercept_is_refused_when_read(tmp_path, phantom):
    """One slice of a series exported with RescaleIntercept 0 where the rest have -1024 (its stored values those of
    the others): read, it is 1024 HU brighter at every level."""
    folder = write_dicom_series(phantom.hu, phantom.affine, tmp_path / "series")
    for i, path in enumerate(sorted(folder.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        ds.PixelData = (ds.pixel_array.astype(np.int32) + 1024).astype(ds.pixel_array.dtype).tobytes()
        ds.RescaleIntercept = 0 if i == 12 else -1024
        ds.save_as(path)
    with pytest.raises(CTInputError, match="as from a rescale intercept of its own"):
        load_ct(folder)


@pytest.mark.parametrize("scale", [lambda hu: (hu + 1024) / 4095, lambda hu: 0.02 * (1 + hu / 1000)],
                         ids=["scaled to 0-1", "attenuation per mm"])
def test_a_ct_whose_values_span_almost_nothing_is_refused(phantom, scale):
    with pytest.raises(CTInputError, match=r"^ct\.nii\.gz: its values run only from [\d.e-]+ to [\d.e-]+, where a "
                                           r"CT in HU spans hundreds .*: values scaled to \[0, 1\] or attenuation "
                                           r"coefficients, not HU; pass the CT in HU$"):
        check_not_air_only(scale(phantom.hu).astype(np.float32), "ct.nii.gz")
    organ = np.random.default_rng(1).normal(60, 10, (16, 16, 16)).astype(np.float32)  # inside the liver: its noise
    check_not_air_only(organ, "crop.nii.gz")
