"""CTs a reader takes without complaint but that are not what they claim: a DICOM folder with a missing slice or two
series, one slice saved as a volume, a voxel size in metres. Each fails its case in one line naming the file, in the
DRR loader (``load_ct``) and in the segmentation bundles' input check (``CheckSegmentationInputd``)."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImaged

from unimiss_monai.data import CTInputError, load_ct
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.transforms import CheckSegmentationInputd

AFFINE = np.diag([2.0, 2.0, 5.0, 1.0])


@pytest.fixture(scope="module")
def hu() -> np.ndarray:
    volume = np.full((12, 12, 8), -1000.0, np.float32)
    volume[3:9, 3:9, 2:6] = 40.0
    return volume


def _segmentation_check(path) -> None:
    item = LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(path)})
    CheckSegmentationInputd(("image", "label"), spatial_dims=3, num_classes=2)(item)


def _both_refuse(path, match: str) -> None:
    with pytest.raises(CTInputError, match=match):
        load_ct(path)
    with pytest.raises(ValueError, match=match):
        _segmentation_check(path)


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path, hu):
    whole = write_dicom_series(hu, AFFINE, tmp_path / "whole")
    load_ct(whole)
    _segmentation_check(whole)
    gap = shutil.copytree(whole, tmp_path / "gap")
    (gap / "slice_0004.dcm").unlink()
    _both_refuse(gap, r"gap: its slices are not evenly spaced \(a gap of 10 mm where the slices are 5 mm apart")


def test_a_dicom_folder_of_two_series_is_refused(tmp_path, hu):
    two = write_dicom_series(hu, AFFINE, tmp_path / "two")
    other = write_dicom_series(hu[:, :, :4], AFFINE, tmp_path / "other")
    for f in other.iterdir():
        shutil.copy(f, two / f"b_{f.name}")
    _both_refuse(two, r"two: holds 2 DICOM series \((4|8) slices, (8|4) slices\); .* put each series in a folder of its own")


@pytest.mark.parametrize("name, shape, zooms, match", [
    ("one_slice.nii.gz", (24, 24, 1), (1.0, 1.0, 1.0), r"one_slice.nii.gz: .*(single slice|2D image)"),
    ("metres.nii.gz", (12, 12, 8), (0.0008, 0.0008, 0.002), r"metres.nii.gz: voxel size \[0.0008, 0.0008, 0.002\] mm is not a CT's"),
    ("wide.nii.gz", (12, 12, 8), (2.0, 2.0, 80.0), r"wide.nii.gz: voxel size \[2.0, 2.0, 80.0\] mm is not a CT's"),
    # was told as "X-ray source ... lies inside the volume" by the DRR bundle
    ("far.nii.gz", (12, 12, 8), (1.0, 1.0, 2.5), r"far.nii.gz: its origin \[1e\+30, 0, -40\] mm lies 1e\+30 mm from "
                                                 r"the scanner's origin, where no patient lies \(a broken header\)"),
])
def test_a_volume_that_is_not_a_ct_grid_is_refused(tmp_path, hu, name, shape, zooms, match):
    volume = np.resize(hu, shape).astype(np.float32)
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = [1e30, 0.0, -40.0] if name == "far.nii.gz" else 0.0
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / name)
    _both_refuse(tmp_path / name, match)


def test_a_dicom_file_of_no_series_beside_the_slices_is_no_second_series(tmp_path, hu):
    """An export's DICOMDIR (or a structured report) has no SeriesInstanceUID: it is left to the reader, as the reader
    leaves it, and the series reads as one."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = write_dicom_series(hu, AFFINE, tmp_path / "with_dir")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    directory = FileDataset(str(folder / "DICOMDIR"), {}, file_meta=meta, preamble=b"\0" * 128)
    directory.FileSetID = "EXPORT"
    directory.save_as(folder / "DICOMDIR", enforce_file_format=True)
    assert "SeriesInstanceUID" not in pydicom.dcmread(folder / "DICOMDIR")
    from unimiss_monai.data.dicom_checks import check_dicom_series

    check_dicom_series(str(folder))
