"""Every DRR hangs like its view's film (``unimiss_monai.conventions``): frontal views with the patient's right on the
image left, laterals as seen from the detector side (standard left lateral: anterior on the image left), in the
rendered array, the stored NIfTI, its affine and its preview alike."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from unimiss_monai import drr
from unimiss_monai.data import save_nifti
from unimiss_monai.engines import DRRGenerator

GEOM = dict(volume_unit="mu", detector_shape=(24, 28), pixel_spacing=1.0, sdd=300.0, sid=200.0)


def _block(where: str) -> np.ndarray:
    """RAS-ordered volume (+x right, +y anterior, +z superior), a dense block on one side, a small one superior."""
    v = np.zeros((16, 16, 16), np.float32)
    sides = {"right": (slice(11, 15), slice(6, 10), slice(4, 12)), "anterior": (slice(6, 10), slice(11, 15), slice(4, 12))}
    v[sides[where]] = 1.0
    v[7:9, 7:9, 13:15] = 0.5  # superior marker: row 0 is the head in every view
    return v


def _left_right(image) -> tuple[float, float]:
    cols = np.asarray(image).sum(0)
    half = len(cols) // 2
    return float(cols[:half].sum()), float(cols[half:].sum())


@pytest.mark.parametrize("view, block, side", [
    ("AP", "right", "left"),  # the patient's right on the image left
    ("PA", "right", "left"),  # hung like AP
    ("LAT_LEFT", "anterior", "left"),  # left side against the detector, seen from there: anterior on the image left
    ("LAT_RIGHT", "anterior", "right"),  # the mirror: seen from the patient's right, anterior on the image right
])
def test_a_block_lands_on_the_side_the_film_shows_it(view, block, side):
    image = drr.render(_block(block), np.eye(4), views=[view], **GEOM)[0].numpy()
    left, right = _left_right(image)
    assert (left > 3 * right) if side == "left" else (right > 3 * left), (view, left, right)
    rows = (image > 0).any(1).nonzero()[0]
    superior = drr.render(_block(block) * (np.arange(16) >= 13), np.eye(4), views=[view], **GEOM)[0].numpy()
    assert (superior > 0).any(1).nonzero()[0].mean() < rows.mean()  # the superior marker above the block's centre


def test_lateral_affine_puts_anterior_at_column_zero():
    # RAS world: column 0 of a left lateral is the most anterior one, so its affine's column step points posterior
    affine = drr.detector_affine("LAT_LEFT", (24, 28), 1.0, 300.0, 200.0)
    assert affine[1, 1] == pytest.approx(-1.0)  # +y is anterior
    assert drr.detector_affine("LAT_RIGHT", (24, 28), 1.0, 300.0, 200.0)[1, 1] == pytest.approx(1.0)


def test_stored_lateral_drr_and_its_preview_show_anterior_on_the_left(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    hu = np.full((20, 20, 12), -1000.0, np.float32)  # RAS voxel order, 8 mm voxels
    hu[4:16, 4:16, :] = 0.0  # a water body
    hu[8:12, 14:16, 2:10] = 2000.0  # bone at the front
    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    affine[:3, 3] = -np.array([19.0, 19.0, 11.0]) * 4.0
    save_nifti(hu, affine, data / "ct.nii.gz")
    DRRGenerator(data, out, views=["LAT_LEFT"], detector_shape=(30, 30), pixel_spacing=8.0, progress=False).run()
    stored = nib.load(out / "ct" / "ct_LAT_LEFT.nii.gz")
    columns_first = stored.get_fdata()  # (W, H): x along the image columns
    # the body is symmetric front to back: the bone is the densest column
    assert columns_first.sum(1).argmax() < columns_first.shape[0] / 2
    assert stored.affine[1, 0] < 0  # each column step moves posterior in the world: column 0 is anterior
    preview = np.asarray(Image.open(out / "ct" / "ct_LAT_LEFT.png"), dtype=float)
    bright = preview >= np.percentile(preview, 97)
    assert np.nonzero(bright)[1].mean() < preview.shape[1] / 2
