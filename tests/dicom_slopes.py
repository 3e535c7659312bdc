"""Test helper: a CT written as a DICOM series one slice of which carries its own rescale slope, as an export that
rescaled one slice and not its pixels leaves it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.phantom import make_ct_phantom

#: the series' grid: (X, Y, Z) voxels of 4 x 4 x 8 mm
SHAPE, AFFINE = (40, 36, 12), np.diag([4.0, 4.0, 8.0, 1.0])
#: the slice given its own slope, and the slope: its air (-1000) reads -66000, which wraps around in int16
SLICE, SLOPE = 5, 66


def phantom_hu() -> np.ndarray:
    """The series' HU, as stored (whole numbers)."""
    return make_ct_phantom(SHAPE, (4.0, 4.0, 8.0), seed=0, noise_hu=0).hu.astype(np.float32).round()


def set_slope(path: Path, slope: float) -> None:
    ds = pydicom.dcmread(path)
    ds.RescaleSlope = slope
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, slope: float = SLOPE) -> Path:
    """:func:`phantom_hu` as a series in ``folder`` (int16, slope 1), slice :data:`SLICE` then given ``slope``."""
    write_dicom_series(phantom_hu(), AFFINE, folder)
    set_slope(sorted(Path(folder).glob("*.dcm"))[SLICE], slope)
    return Path(folder)
