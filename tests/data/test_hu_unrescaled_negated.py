"""A CT stored as raw scanner values (HU + 1024: its rescale intercept not applied) was only warned about, and not even
that where its padding lay below its air; a CT with its sign flipped (air at +1000) passed silently. Both were
rendered, segmented and trained on as if HU: each is refused in one line naming the file and the fix. A CT in HU
passes, with its padding, resampled, or cropped inside the body (no air; soft tissue and bone only), as do MR-like
values (a warning, as before)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from unimiss_monai.data import load_ct, save_nifti
from unimiss_monai.data.ct_io import MAX_AIR_ONLY_HU, CTInputError, check_not_air_only, warn_if_not_ct_hu
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.locators import find_real_ct
from unimiss_monai.data.phantom import make_ct_phantom

RAW = (r"next to no values below -50 but padding, \d+ % near 0 \(air stored without its rescale\) and \d+ % near 1000 "
       r"\(soft tissue\): raw scanner values \(HU \+ 1024\), not HU; apply the rescale \(value x RescaleSlope \+ "
       r"RescaleIntercept, the intercept usually -1024\)$")
NEGATED = (r"\d+ % of its values lie near \+1000 with next to nothing above them but padding, and next to none near "
           r"-1000: air with its sign flipped \(soft tissue just below 0, bone far below\), not HU; multiply the "
           r"values by -1 \(a negative RescaleSlope in the export\?\)$")
REAL = find_real_ct()
needs_real_ct = pytest.mark.skipif(REAL is None, reason="sample CT not installed")


@pytest.fixture(scope="module")
def real_hu():
    """The sample chest CT in HU, (512, 512, 133), its scan circle padded with -2048 (a fifth of its voxels)."""
    return np.ascontiguousarray(load_ct(REAL.image)[0])


@pytest.fixture(scope="module")
def phantom():
    return make_ct_phantom((48, 40, 24))


def _resampled(hu: np.ndarray) -> np.ndarray:
    """32 slices of ``hu`` resampled to 3/4 of their size with cubic interpolation: the padding rings where it meets
    air, above and below both."""
    from scipy.ndimage import zoom

    return zoom(hu[:, :, 40:72], (0.75, 0.75, 1.0), order=3).astype(np.float32)


@needs_real_ct
@pytest.mark.parametrize("padding", [None, 0, -2000], ids=["padding shifted too", "padding 0", "padding -2000"])
def test_the_real_ct_without_its_rescale_intercept_is_refused(real_hu, padding):
    raw = real_hu + 1024  # its padding at -1024
    if padding is not None:
        raw[real_hu == -2048] = padding
    with pytest.raises(CTInputError, match=r"^raw\.nii\.gz: " + RAW):
        check_not_air_only(raw, "raw.nii.gz")
    with pytest.raises(CTInputError, match=r"^raw\.nii\.gz: " + RAW):
        check_not_air_only(_resampled(raw), "raw.nii.gz")


@needs_real_ct
@pytest.mark.parametrize("padding", [None, -2048], ids=["padding negated too", "padding kept"])
def test_the_real_ct_with_its_sign_flipped_is_refused(real_hu, padding):
    negated = -real_hu
    if padding is not None:
        negated[real_hu == -2048] = padding
    with pytest.raises(CTInputError, match=r"^negated\.nii\.gz: " + NEGATED):
        check_not_air_only(negated, "negated.nii.gz")
    with pytest.raises(CTInputError, match=r"^negated\.nii\.gz: " + NEGATED):
        check_not_air_only(_resampled(negated), "negated.nii.gz")


@needs_real_ct
@pytest.mark.parametrize("padding", [-2048, -3024, -32768])
def test_the_real_ct_in_hu_passes_padded_and_resampled(real_hu, padding):
    hu = real_hu.copy()
    hu[real_hu == -2048] = padding
    check_not_air_only(hu, "ct.nii.gz")
    check_not_air_only(_resampled(hu), "ct.nii.gz")


@needs_real_ct
def test_no_crop_of_the_real_ct_is_refused(real_hu):
    """Crops of 16 to 64 voxels a side all over the CT: inside the body (no air), some hold only soft tissue and bone
    (the spine, the sternum), the cases nearest to either signature."""
    for size in (16, 32, 64):
        for x in range(0, 512 - size + 1, size):
            for y in range(0, 512 - size + 1, size):
                for z in range(0, 133 - size + 1, size):
                    crop = real_hu[x:x + size, y:y + size, z:z + size]
                    if crop.max() <= MAX_AIR_ONLY_HU:  # air and padding only: refused as no body
                        continue
                    check_not_air_only(crop, f"crop_{size}_{x}_{y}_{z}.nii.gz")


@needs_real_ct
def test_small_crops_of_vertebra_and_rib_are_not_taken_for_negated_ct(real_hu):
    """Flat 16 x 16 x 8 crops on an overlapping grid: a few of vertebra or rib hold 5-6 % of cortical bone near
    +1000 HU beside soft tissue, as much as a negated CT's air by a twentieth, far from a negated chest's 40 %."""
    for x in range(0, 512 - 16 + 1, 8):
        for y in range(0, 512 - 16 + 1, 8):
            for z in range(0, 133 - 8 + 1, 4):
                crop = real_hu[x:x + 16, y:y + 16, z:z + 8]
                if crop.max() > MAX_AIR_ONLY_HU:
                    check_not_air_only(crop, f"crop_{x}_{y}_{z}.nii.gz")


def test_a_phantom_without_its_rescale_intercept_or_with_its_sign_flipped_is_refused(phantom):
    with pytest.raises(CTInputError, match=r"^ct\.nii\.gz: " + RAW):
        check_not_air_only(phantom.hu + 1024, "ct.nii.gz")
    with pytest.raises(CTInputError, match=r"^ct\.nii\.gz: " + NEGATED):
        check_not_air_only(-phantom.hu, "ct.nii.gz")
    check_not_air_only(phantom.hu, "ct.nii.gz")


def test_a_dicom_series_without_its_rescale_intercept_is_refused_when_read(tmp_path, phantom):
    """Every slice's stored values those of an intercept of -1024, and no intercept in the header (0)."""
    folder = write_dicom_series(phantom.hu, phantom.affine, tmp_path / "series")
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.PixelData = (ds.pixel_array.astype(np.int32) + 1024).astype(ds.pixel_array.dtype).tobytes()
        ds.RescaleIntercept = 0
        ds.save_as(path)
    with pytest.raises(CTInputError, match=rf"^{folder}: " + RAW):
        load_ct(folder)


def test_a_negated_nifti_is_refused_when_read(tmp_path, phantom):
    path = save_nifti(-phantom.hu, phantom.affine, tmp_path / "negated.nii.gz")
    with pytest.raises(CTInputError, match=rf"^{path}: " + NEGATED):
        load_ct(path)


def test_crops_inside_the_body_pass():
    """No air: a liver crop (soft tissue near 0, which is where raw air lies), a crop from lung to liver, and a crop of
    muscle and bone without fat (cortical bone near 1000 HU, where raw soft tissue and negated air lie)."""
    rng = np.random.default_rng(0)
    check_not_air_only(rng.uniform(-100, 200, (32, 32, 16)).astype(np.float32), "liver.nii.gz")
    check_not_air_only(rng.normal(60, 10, (32, 32, 16)).astype(np.float32), "liver.nii.gz")
    crop = np.concatenate([rng.normal(-850, 30, (32, 32, 8)), rng.normal(50, 15, (32, 32, 8))], axis=2)
    check_not_air_only(crop.astype(np.float32), "lung_liver.nii.gz")
    x, y = np.meshgrid(np.arange(48) - 23.5, np.arange(48) - 23.5, indexing="ij")
    radius = np.hypot(x, y)[..., None].repeat(16, axis=2)
    femur = rng.normal(50, 15, radius.shape)  # muscle
    femur[radius < 16] = rng.normal(1300, 250, radius.shape)[radius < 16]  # cortical bone
    femur[radius < 11] = rng.normal(250, 80, radius.shape)[radius < 11]  # trabecular bone and marrow
    check_not_air_only(femur.astype(np.float32), "femur.nii.gz")


def test_contrast_and_metal_in_a_ct_in_hu_pass(phantom):
    """Contrast at 1000 HU in a tenth of the voxels (where negated air would lie) and metal above it."""
    hu = phantom.hu.copy()
    hu[20:28, 16:24, :] = 1000.0
    hu[22:24, 18:20, :] = 3071.0
    check_not_air_only(hu, "contrast.nii.gz")


def test_mr_like_values_are_still_only_warned_about():
    """Values from 0 to 900 have no air at all, nor a mass near 1000: not told apart from raw values, as before."""
    mr = np.random.default_rng(0).uniform(0, 900, (16, 16, 8)).astype(np.float32)
    check_not_air_only(mr, "mr.nii.gz")
    with pytest.warns(UserWarning, match=r"^mr\.nii\.gz: intensities \[0, 9\d\d\] have no air near -1000 HU"):
        assert warn_if_not_ct_hu(mr, "mr.nii.gz") is True
