"""Inputs a reader takes without complaint but whose grid or values cannot be right: an affine or NIfTI header holding
NaN or Inf (its origin included), a sform and a qform that are not one grid, complex voxels, a DICOM slice of another
orientation, pixel spacing or size than the rest of its series, and a CT whose values are far beyond any HU. Each fails
its case in one line naming the file and the fix: in the DRR loader (``load_ct``), in the header and grid checks every
loader path makes (``check_nifti_header``, ``check_grid``, ``check_dicom_series``) and, for the HU range, in the
checks of the pretraining and segmentation inputs (``check_not_air_only``)."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged

from unimiss_monai.data import CTInputError, load_ct, make_ct_phantom
from unimiss_monai.data.ct_io import MAX_PLAUSIBLE_HU, check_not_air_only
from unimiss_monai.data.dicom_checks import check_dicom_series
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.grid_checks import check_grid, check_nifti_header
from unimiss_monai.transforms import CheckImage, CheckSegmentationInputd, CheckSpatialDimsd

AFFINE = np.diag([2.0, 2.0, 5.0, 1.0])
NON_FINITE = (r"holds NaN or Inf, so its voxels have no place in space; rewrite the header with the scanner's "
              r"origin/orientation$")


@pytest.fixture(scope="module")
def body() -> np.ndarray:
    return make_ct_phantom((16, 14, 8), (2.0, 2.0, 5.0), seed=0, noise_hu=0).hu.astype(np.float32)


def _header(shape=(16, 14, 8), dtype=np.float32) -> nib.Nifti1Header:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    return hdr


def _save(hdr: nib.Nifti1Header, data: np.ndarray, path):
    """Write ``data`` under ``hdr`` as it is (no affine given: nibabel keeps the header's sform and qform)."""
    nib.save(nib.Nifti1Image(data, None, header=hdr), path)
    return path


def _refused_by_header_and_loader(path, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_nifti_header(str(path))
    with pytest.raises(CTInputError, match=match):
        load_ct(path)


# 1. NaN or Inf anywhere in the grid, the origin included


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_an_affine_with_a_non_finite_origin_is_refused(bad):
    affine = AFFINE.copy()
    affine[1, 3] = bad
    check_grid(AFFINE, 3, "good.nii.gz")
    with pytest.raises(ValueError, match=r"^origin\.nii\.gz: its affine " + NON_FINITE):
        check_grid(affine, 3, "origin.nii.gz")


def test_a_2d_image_whose_affine_is_nan_outside_its_own_axes_is_refused():
    # only the first two columns were looked at: a radiograph with NaN origin and third axis was segmented, marked ok
    affine = torch.full((4, 4), float("nan"))
    affine[:3, 0], affine[:3, 1], affine[3] = torch.tensor([0.2, 0.0, 0.0]), torch.tensor([0.0, 0.2, 0.0]), 0.0
    affine[3, 3] = 1.0
    image = MetaTensor(torch.rand(1, 8, 8), affine=affine)
    image.meta["filename_or_obj"] = "radiograph.nii.gz"
    with pytest.raises(ValueError, match=r"^radiograph\.nii\.gz: its affine " + NON_FINITE):
        CheckImage()(image)


def test_a_sform_with_a_nan_origin_is_refused_before_it_breaks_the_renderer(tmp_path, body):
    hdr = _header()
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [2, 0, 0, np.nan], [0, 2, 0, np.nan], [0, 0, 5, np.nan]
    path = _save(hdr, body, tmp_path / "nan_origin.nii")
    assert np.isnan(nib.load(path).affine[:3, 3]).all()  # the file holds what the test means
    _refused_by_header_and_loader(path, r"nan_origin\.nii: its sform \(srow_x/y/z\) " + NON_FINITE)


@pytest.mark.parametrize("field", ["qoffset_x", "quatern_c", "pixdim"])
def test_a_qform_with_a_non_finite_parameter_is_refused(tmp_path, body, field):
    hdr = _header()
    hdr.set_qform(AFFINE, code=1)
    hdr["sform_code"] = 0
    if field == "pixdim":
        hdr["pixdim"][2] = np.inf
    else:
        hdr[field] = np.nan
    path = _save(hdr, body, tmp_path / "bad_qform.nii")
    match = r"bad_qform\.nii: its qform \(quatern_b/c/d, qoffset_x/y/z or pixdim\) " + NON_FINITE
    _refused_by_header_and_loader(path, match)


# 2. a sform and a qform that are not one grid


def _both_forms(sform: np.ndarray, qform: np.ndarray) -> nib.Nifti1Header:
    hdr = _header()
    hdr.set_sform(sform, code=1)
    hdr.set_qform(qform, code=1)
    return hdr


def _oblique(origin=(-180.3, -200.7, 1234.5)) -> np.ndarray:
    """A scanner-like grid: rotated about two axes, anisotropic voxels, an origin far from 0."""
    a, b = np.deg2rad(13.0), np.deg2rad(-7.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = rz @ rx @ np.diag([0.7, 0.7, 1.25]), origin
    return affine


def test_a_sform_and_qform_of_other_voxel_sizes_are_refused(tmp_path, body):
    path = _save(_both_forms(np.diag([8.0, 8.0, 8.0, 1.0]), np.diag([2.0, 2.0, 2.0, 1.0])), body, tmp_path / "two.nii")
    match = (r"^.*two\.nii: its sform and qform disagree \(sform: voxel size \[8\.0, 8\.0, 8\.0\] mm, origin "
             r"\[0\.0, 0\.0, 0\.0\] mm; qform: voxel size \[2\.0, 2\.0, 2\.0\] mm, origin \[0\.0, 0\.0, 0\.0\] mm\), "
             r"and readers differ in which one they use: rewrite the header so that sform and qform agree, or set one "
             r"of their codes to 0$")
    _refused_by_header_and_loader(path, match)


def test_a_sform_and_qform_half_a_millimetre_apart_are_refused(tmp_path, body):
    shifted = _oblique()
    shifted[0, 3] += 0.5
    path = _save(_both_forms(shifted, _oblique()), body, tmp_path / "shifted.nii")
    _refused_by_header_and_loader(path, r"shifted\.nii: its sform and qform disagree .*origin \[-179\.8, ")


def test_a_sform_and_qform_of_other_orientations_say_so(tmp_path, body):
    turned, straight = np.diag([-2.0, -2.0, 5.0, 1.0]), np.diag([2.0, 2.0, 5.0, 1.0])
    turned[:2, 3] = straight[:2, 3] = 30.0  # the same origin and voxel size, only the axes turned
    path = _save(_both_forms(turned, straight), body, tmp_path / "turned.nii")
    with pytest.raises(ValueError, match=r"turned\.nii: its sform and qform disagree .*; they differ in orientation\)"):
        check_nifti_header(str(path))


def test_a_scanner_header_whose_forms_agree_up_to_float32_passes(tmp_path, body):
    # both forms of one oblique grid, each as float32 stores it (the quaternion and offsets too): one grid
    path = _save(_both_forms(_oblique(), _oblique()), body, tmp_path / "scanner.nii")
    hdr = nib.load(path).header
    assert int(hdr["sform_code"]) == int(hdr["qform_code"]) == 1
    assert not np.array_equal(hdr.get_sform(), hdr.get_qform())  # they do differ, by rounding
    check_nifti_header(str(path))
    load_ct(path)


# 3. complex voxels


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_voxels_are_refused_before_their_imaginary_part_is_dropped(tmp_path, body, dtype):
    path = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image((body + 1j * body).astype(dtype), AFFINE), path)
    match = (rf"^{path}: its voxels are complex numbers \({np.dtype(dtype).name}\), of which a reader keeps the real "
             r"part and drops the rest; save the magnitude \(or the real part\) as a real-valued image$")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's ComplexWarning was all there was
        _refused_by_header_and_loader(path, match)


# 4. a DICOM slice of another geometry than the rest of its series


def _series(tmp_path, body, name: str):
    return write_dicom_series(body, AFFINE, tmp_path / name)


def _rewrite_slice(path, **tags) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    if "Rows" in tags:  # pixels that fit the size it declares
        ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("tags, what", [
    ({"ImageOrientationPatient": [-1.0, 0.0, 0.0, 0.0, 0.0, -1.0]},
     r"orientation \(ImageOrientationPatient\), \[-1, 0, 0, 0, 0, -1\] where the others have \[-1, 0, 0, 0, -1, 0\]"),
    ({"PixelSpacing": [0.5, 0.5]},
     r"pixel spacing \(PixelSpacing, mm\), \[0\.5, 0\.5\] where the others have \[2, 2\]"),
    ({"Rows": 10, "Columns": 12}, r"size \(Rows, Columns\), \[10, 12\] where the others have \[14, 16\]"),
])
def test_a_slice_of_another_geometry_is_refused_naming_it(tmp_path, body, tags, what):
    folder = _series(tmp_path, body, "odd")
    check_dicom_series(str(folder))
    _rewrite_slice(folder / "slice_0003.dcm", **tags)
    match = (rf"^{folder}: slice slice_0003\.dcm has another {what}; a reader stacks it as if it matched, and the "
             r"volume is distorted: remove that slice if it is no part of the series \(a localizer\), else export the "
             r"series again$")
    with pytest.raises(ValueError, match=match):
        check_dicom_series(str(folder))
    with pytest.raises(CTInputError, match=match):
        load_ct(folder)


@pytest.mark.parametrize("damage, what", [
    (lambda f: f.write_bytes(f.read_bytes()[:600]), r"is an image \(CT Image Storage\) whose header is cut short"),
    (lambda f: f.write_bytes(f.read_bytes()[:-10]), r"holds \d+ bytes of pixel data .* the file is cut short"),
    (lambda f: f.write_bytes(b"not a slice"), r"is no readable DICOM file \(it has no DICOM header\)"),
])
def test_a_slice_the_reader_would_leave_out_is_named(tmp_path, body, damage, what):
    # ITK leaves such a file out of the series without a word; the last slice, so the others stay evenly spaced
    folder = _series(tmp_path, body, "damaged")
    last = sorted(folder.glob("*.dcm"))[-1]
    damage(last)
    with pytest.raises(CTInputError, match=rf"^{folder}: {last.name} {what}; a reader would leave it out .*lose that "
                                           r"slice unsaid: copy the series again from the archive"):
        load_ct(folder)


def test_the_segmentation_input_check_refuses_a_slice_of_another_orientation(tmp_path, body):
    # through MONAI's reader, which reads such a series without a word, and the bundles' input check
    folder = _series(tmp_path, body, "turned")
    _rewrite_slice(folder / "slice_0005.dcm", ImageOrientationPatient=[-1.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    item = LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(folder)})
    with pytest.raises(ValueError, match=rf"^{folder}: slice slice_0005\.dcm has another orientation"):
        CheckSegmentationInputd(("image", "label"), spatial_dims=3, num_classes=2)(item)


def test_slices_that_differ_only_in_the_last_digits_of_their_decimals_pass(tmp_path, body):
    folder = _series(tmp_path, body, "rounded")
    _rewrite_slice(folder / "slice_0002.dcm", ImageOrientationPatient=[-0.99999, 0.0, 0.0, 0.0, -0.99999, 0.00001],
                   PixelSpacing=[2.00001, 1.99999])
    check_dicom_series(str(folder))
    load_ct(folder)


# 5. values no CT in HU reaches


def test_a_ct_scaled_by_1000_is_refused_by_the_loader(tmp_path, body):
    path = tmp_path / "milli.nii.gz"
    nib.save(nib.Nifti1Image(body * 1000.0, AFFINE), path)
    low, top = float((body * 1000.0).min()), float((body * 1000.0).max())
    match = (rf"^{path}: values from {low:.0f} to {top:.0f} with a median of -?\d+, where a CT in HU has its median "
             r"within \+-10000 \(metal moves only its highest values\): not in HU \(check the rescale slope/intercept\)$")
    with pytest.raises(CTInputError, match=match):
        load_ct(path)


def test_the_hu_range_check_reaches_every_caller_of_check_not_air_only(body):
    scaled = body * 1000.0
    with pytest.raises(CTInputError, match=r"^scaled: values from .* not in HU"):
        check_not_air_only(torch.from_numpy(scaled), "scaled")
    image = MetaTensor(torch.from_numpy(scaled)[None], affine=torch.from_numpy(AFFINE))
    image.meta["filename_or_obj"] = "scaled.nii.gz"
    with pytest.raises(ValueError, match=r"scaled\.nii\.gz: values from .* not in HU"):
        CheckSpatialDimsd("image", spatial_dims=3)({"image": image})  # the pretraining and classification input check


def test_metal_in_a_few_voxels_and_an_extended_scale_pass(tmp_path, body):
    hu = body.copy()
    flat = hu.reshape(-1)
    flat[:: 200] = 30000.0  # 0.5% of the voxels at the top of an extended HU scale: metal, not another unit
    check_not_air_only(hu, "metal.nii.gz")
    crop = body.copy().reshape(-1)
    crop[: crop.size // 5] = 25000.0  # a small crop around an implant: a fifth of it metal
    check_not_air_only(crop.reshape(body.shape), "implant_crop.nii.gz")
    check_not_air_only(np.clip(body, None, MAX_PLAUSIBLE_HU), "dense.nii.gz")
    path = tmp_path / "metal.nii.gz"
    nib.save(nib.Nifti1Image(hu, AFFINE), path)
    load_ct(path)


def test_a_radiograph_cut_short_or_without_pixels_is_refused_before_it_is_segmented(tmp_path):
    """A DICOM copy cut short reads as a whole image of zeros and junk (ITK fills the rest): CheckImage refuses it,
    naming the bytes it holds and needs; a whole file passes."""
    from unimiss_monai.data.dicom_series import new_dicom_dataset
    from unimiss_monai.data.dicom_checks import check_dicom_pixel_data

    pixels = (np.arange(64 * 56, dtype=np.uint16) % 4000).reshape(64, 56)

    def save(name, data):
        ds = new_dicom_dataset("1.2.840.10008.5.1.4.1.1.1.1", "DX", 64, 56, signed=False)
        if data is not None:
            ds.PixelData = data
        ds.save_as(tmp_path / name, enforce_file_format=True)
        return tmp_path / name

    good, short, none = save("good.dcm", pixels.tobytes()), save("short.dcm", pixels.tobytes()[:100]), save("none.dcm", None)
    check_dicom_pixel_data(str(good))
    image = LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(short)})["image"]
    with pytest.raises(ValueError, match=rf"^{short}: holds 100 bytes of pixel data where its header \(64 x 56, 16 "
                                         r"bits, 1 frame\(s\)\) needs 7168: the file is cut short; copy it again"):
        CheckImage()(image)
    with pytest.raises(ValueError, match=rf"^{none}: holds no pixel data"):
        check_dicom_pixel_data(str(none))


def test_a_sheared_ct_written_here_reads_back_and_one_from_elsewhere_is_told_as_sheared(tmp_path):
    """A tilted-gantry CT has a sheared affine, which a qform cannot hold: save_ct writes the sform alone, so the DRR
    bundle's slabs of such a CT read back (before, the next stage refused them); a file whose qform is the nearest
    grid at right angles is refused naming the shear."""
    from unimiss_monai.data import save_ct

    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[1, 2] = 0.4  # z steps forward in y as it goes: a gantry tilted by about 9 degrees
    hu = np.full((16, 14, 8), -1000.0, np.float32)
    hu[4:12, 4:10, 2:6] = 40.0
    save_ct(hu, affine, tmp_path / "tilted.nii.gz")
    back, back_affine = load_ct(tmp_path / "tilted.nii.gz")
    np.testing.assert_allclose(back_affine, affine, atol=1e-5)
    assert nib.load(tmp_path / "tilted.nii.gz").header["qform_code"] == 0
    image = nib.Nifti1Image(hu, affine)
    image.set_qform(affine, code=1)  # nibabel drops the shear from the qform
    image.set_sform(affine, code=1)
    nib.save(image, tmp_path / "both.nii.gz")
    with pytest.raises(ValueError, match=r"its sform is sheared \(axes not at right angles, as from a tilted gantry\)"):
        check_nifti_header(str(tmp_path / "both.nii.gz"))


def test_a_slightly_oblique_ct_near_a_half_turn_passes_as_any_writer_stores_it(tmp_path):
    """RAS of a slightly oblique axial DICOM is near a half turn, where a float32 quaternion puts the qform's 5 mm axis
    0.004 mm off the sform: the same grid, as ITK and nibabel read it, and what save_ct itself writes."""
    from scipy.spatial.transform import Rotation

    tilt = Rotation.from_euler("xy", [0.1, 0.05], degrees=True).as_matrix()  # the scanner's IOP, 0.1 and 0.05 degrees
    row, column = tilt @ [1.0, 0, 0], tilt @ [0, 1.0, 0]
    affine = np.eye(4)  # LPS to RAS turns the patient frame half a turn about z; rows stored flipped, as dcm2niix does
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ np.column_stack([row * 0.7, column * 0.7, np.cross(row, column) * 5])
    affine[:3, 1] *= -1
    affine[:3, 3] = [150.0, 180.0, -400.0]
    hu = np.full((24, 24, 6), -1000, np.int16)
    hu[6:18, 6:18] = 40
    from unimiss_monai.data import save_ct

    save_ct(hu, affine, tmp_path / "oblique.nii.gz")
    header = nib.load(tmp_path / "oblique.nii.gz").header
    assert np.abs(header.get_sform() - header.get_qform()).max() > 1e-3  # the rounding the check must tolerate
    check_nifti_header(str(tmp_path / "oblique.nii.gz"))
    load_ct(tmp_path / "oblique.nii.gz")


def test_a_2d_image_with_no_third_voxel_size_and_a_dose_report_beside_a_series_pass(tmp_path, body):
    """Both are read fine: a 2D NIfTI with pixdim[3] = 0 in its qform, and a CT series folder that also holds the
    scanner's dose report (a series of its own, but no image)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    image = nib.Nifti1Image(np.random.default_rng(0).random((64, 48), dtype=np.float32), np.eye(4))
    image.header["pixdim"][1:4] = [0.14, 0.15, 0.0]
    image.header.set_qform(None, code=1)
    image.header["pixdim"][3] = 0.0
    image.header["qform_code"], image.header["sform_code"] = 1, 0
    nib.save(image, tmp_path / "xray.nii")
    check_nifti_header(str(tmp_path / "xray.nii"))
    folder = _series(tmp_path, body, "ct")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.67"  # X-Ray Radiation Dose SR
    meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID = generate_uid(), ExplicitVRLittleEndian
    report = Dataset()
    report.file_meta, report.SOPClassUID = meta, meta.MediaStorageSOPClassUID
    report.SOPInstanceUID, report.SeriesInstanceUID, report.Modality = meta.MediaStorageSOPInstanceUID, generate_uid(), "SR"
    report.save_as(folder / "dose_report.dcm", enforce_file_format=True)
    check_dicom_series(str(folder))
