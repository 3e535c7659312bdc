"""``LoadCTImage(d)``: MONAI's ``LoadImage(d)`` with a DICOM series of grey slices read in float pixels, so that a slice
exported with its own rescale slope keeps its values instead of wrapping around in the first slice's int16; every
other input reads as ``LoadImage`` reads it (the CT bundles load with it: tests/bundles/test_ct_series_slopes.py)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from dicom_slopes import AFFINE, SLICE, SLOPE, phantom_hu, write_series
from monai.transforms import LoadImage, LoadImaged

from unimiss_monai.data.ct_series_reader import CTSeriesReader, is_grey_dicom_folder
from unimiss_monai.data.dicom_series import new_dicom_dataset
from unimiss_monai.transforms import LoadCTImage, LoadCTImaged


def test_a_series_and_a_nifti_read_as_load_image_reads_them(tmp_path):
    hu = phantom_hu()
    series = write_series(tmp_path / "series", slope=1)
    nifti = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, AFFINE), nifti)
    for path in (series, nifti):
        ours, plain = LoadCTImage(image_only=True)(str(path)), LoadImage(image_only=True)(str(path))
        torch.testing.assert_close(ours.as_tensor(), plain.as_tensor())
        torch.testing.assert_close(ours.affine, plain.affine)
        assert sorted(ours.meta) == sorted(plain.meta)  # the same reader's keys: nibabel's for the NIfTI
        np.testing.assert_array_equal(np.asarray(ours), hu)
    assert "as_closest_canonical" in LoadCTImage(image_only=True)(str(nifti)).meta  # NibabelReader's own key
    assert CTSeriesReader().verify_suffix(series) and not CTSeriesReader().verify_suffix(nifti)


def test_a_reader_the_user_names_is_asked_first_and_reader_arguments_reach_the_series(tmp_path):
    nifti = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(phantom_hu(), AFFINE), nifti)
    named = LoadCTImage(reader="ITKReader", image_only=True)(str(nifti))  # not nibabel, as with LoadImage
    assert "as_closest_canonical" not in named.meta
    assert not any(isinstance(r, CTSeriesReader) for r in LoadCTImage(reader="ITKReader").readers)
    series = write_series(tmp_path / "series", slope=1)
    lps = LoadCTImage(image_only=True, affine_lps_to_ras=False)(str(series))  # an ITKReader argument
    ras = LoadCTImage(image_only=True)(str(series))
    torch.testing.assert_close(lps.affine[:2], -ras.affine[:2])  # x and y flipped: LPS, as asked
    loader = LoadCTImaged("image", image_only=True, affine_lps_to_ras=False)
    torch.testing.assert_close(loader({"image": str(series)})["image"].affine, lps.affine)


def test_a_slice_with_its_own_slope_keeps_its_values(tmp_path):
    series, hu = write_series(tmp_path / "series"), phantom_hu()
    ours = LoadCTImaged("image", image_only=True)({"image": str(series)})["image"]
    np.testing.assert_array_equal(np.asarray(ours[..., SLICE]), SLOPE * hu[..., SLICE])
    np.testing.assert_array_equal(np.asarray(ours[..., :SLICE]), hu[..., :SLICE])
    plain = LoadImaged("image", image_only=True)({"image": str(series)})["image"]
    assert plain[..., SLICE].min() > -32769 > SLOPE * hu[..., SLICE].min()  # as the CT bundles read it before: wrapped


def test_a_colour_series_is_left_to_load_image(tmp_path):
    """Asked for float pixels, ITK averages colour into one grey channel, which no check could tell from a CT."""
    folder = tmp_path / "colour"
    folder.mkdir()
    ds = new_dicom_dataset("1.2.840.10008.5.1.4.1.1.7", "OT", 8, 6, signed=False)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    pixels = np.zeros((8, 6, 3), np.uint8)
    pixels[..., 0] = 200  # pure red
    ds.PixelData = pixels.tobytes()
    ds.save_as(folder / "rgb.dcm", enforce_file_format=True)
    assert not is_grey_dicom_folder(folder) and is_grey_dicom_folder(write_series(tmp_path / "series"))
    ours, plain = LoadCTImage(image_only=True)(str(folder)), LoadImage(image_only=True)(str(folder))
    torch.testing.assert_close(ours.as_tensor(), plain.as_tensor())
    assert sorted(np.unique(np.asarray(ours)).tolist()) == [0, 200]  # channels kept, not averaged to 66.7
