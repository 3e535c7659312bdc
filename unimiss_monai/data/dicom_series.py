"""Write an (X, Y, Z) HU volume with a RAS affine as a DICOM CT series (one file per axial slice, LPS patient frame).

Used to make DICOM test data and sample data from phantoms; reading it back with :func:`unimiss_monai.data.load_ct`
gives the same array and affine as the NIfTI version of the same volume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unimiss_monai.data.writers import staged_dir

__all__ = ["new_dicom_dataset", "write_dicom_series"]

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def new_dicom_dataset(sop_class_uid: str, modality: str, rows: int, columns: int, signed: bool):
    """A pydicom ``Dataset`` with its file meta, a fresh instance UID, the phantom patient and 16-bit grey pixels of
    ``rows`` x ``columns`` declared (set ``PixelData`` and the geometry, then ``save_as(path, enforce_file_format=True)``)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class_uid, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = modality, "Phantom^Chest", "PHANTOM"
    ds.Rows, ds.Columns = int(rows), int(columns)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(bool(signed))
    return ds


def write_dicom_series(hu: np.ndarray, affine: np.ndarray, folder: str | Path, series_description: str = "phantom") -> Path:
    """Write ``hu`` (X, Y, Z) as a CT series into ``folder`` (created; replaced whole, never half-written).

    Voxel axis 0 runs along the DICOM rows (column index), axis 1 along the columns, axis 2 is the slice index.
    HU values are stored as int16 with rescale slope 1 and intercept 0.

    Args:
        hu: (X, Y, Z) HU volume.
        affine: 4x4 voxel-to-world affine in RAS mm; its first two columns must be orthogonal.
        folder: output folder of the series.
        series_description: DICOM SeriesDescription.

    Returns:
        The folder path.
    """
    from pydicom.uid import CTImageStorage, generate_uid

    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"write_dicom_series: expected an (X, Y, Z) volume, got shape {hu.shape}")
    lps = RAS_TO_LPS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_dir, col_dir = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    if abs(float(row_dir @ col_dir)) > 1e-6:
        raise ValueError("write_dicom_series: the affine's first two axes must be orthogonal (DICOM slices are planar grids)")
    pixels = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    folder = Path(folder)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    with staged_dir(folder) as tmp:
        for k in range(hu.shape[2]):
            ds = new_dicom_dataset(CTImageStorage, "CT", rows=hu.shape[1], columns=hu.shape[0], signed=True)
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = series_description, 1, k + 1
            ds.ImagePositionPatient = [float(v) for v in lps[:3, :] @ np.array([0.0, 0.0, k, 1.0])]
            ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
            # PixelSpacing is (between rows, between columns) = (axis 1, axis 0)
            ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
            ds.SliceThickness = float(spacing[2])
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
            ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
            ds.save_as(tmp / f"slice_{k:04d}.dcm", enforce_file_format=True)
    return folder
