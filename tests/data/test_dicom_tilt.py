"""A DICOM series from a tilted gantry (slices sheared against their planes) is refused, not stacked straight; an
oblique series that is not sheared, in any file order, and positions written to a hundredth of a mm pass."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from test_grid_plausibility import AFFINE, _rewrite_slice, _series, body  # noqa: F401 - body: the fixture

from unimiss_monai.data import load_ct
from unimiss_monai.data.ct_io import CTInputError
from unimiss_monai.data.dicom_checks import check_dicom_series
from unimiss_monai.data.dicom_series import write_dicom_series


@pytest.mark.parametrize("tilt", [15.0, 2.0])
def test_a_series_from_a_tilted_gantry_is_refused_not_stacked_straight(tmp_path, body, tilt):  # noqa: F811
    """Slices sheared against their planes (the table feeds along the body axis, the slice planes are tilted) were
    stacked straight along the slice normal by the reader: the far slices lay tens of mm off the anatomy, exit 0."""
    folder = _series(tmp_path, body, "tilted")
    slices = sorted(folder.glob("*.dcm"))
    jitter = np.random.default_rng(0).uniform(-0.01, 0.01, (len(slices), 3))
    for path, shake in zip(slices, jitter):  # positions written to a few hundredths of a mm are no tilt
        _rewrite_slice(path, ImagePositionPatient=[round(float(v) + d, 2) for v, d in
                                                   zip(pydicom.dcmread(path).ImagePositionPatient, shake)])
    check_dicom_series(str(folder))
    first = pydicom.dcmread(slices[0])
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    # each slice's corner moves along the column direction by tan(tilt) times its distance along the normal
    for path in slices:
        ds = pydicom.dcmread(path)
        corner = np.asarray(ds.ImagePositionPatient, dtype=float)
        along = float((corner - np.asarray(first.ImagePositionPatient, dtype=float)) @ normal)
        moved = corner + iop[3:] * np.tan(np.radians(tilt)) * along
        _rewrite_slice(path, ImagePositionPatient=[float(v) for v in moved])
    match = (rf"^{folder}: its slices drift [\d.]+ mm across the slice planes from the first to the last \(a gantry "
             rf"tilt of about {tilt:.1f} degrees\), which readers stack straight, so the slices lie off the anatomy: "
             r"convert it with a tool that handles gantry tilt \(dcm2niix writes a tilt-corrected copy\) and pass "
             r"that NIfTI$")
    with pytest.raises(CTInputError, match=match):
        load_ct(folder)


def test_an_oblique_series_that_is_not_sheared_passes_in_any_file_order(tmp_path, body):  # noqa: F811
    """Slices whose planes are oblique but whose corners step along their normal are no tilt, whatever the order of
    the files (here the last slice written first)."""
    turn = np.eye(4)
    c, s_ = np.cos(np.radians(20)), np.sin(np.radians(20))
    turn[1:3, 1:3] = [[c, -s_], [s_, c]]
    folder = write_dicom_series(body, turn @ AFFINE, tmp_path / "oblique")
    files = sorted(folder.glob("*.dcm"))
    for i, path in enumerate(files):  # file names in reverse slice order
        path.rename(path.with_name(f"x{len(files) - i:04d}.dcm"))
    check_dicom_series(str(folder))
    load_ct(folder)
