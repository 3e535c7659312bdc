"""A CT's saliency PNG shows the planes through the map's peak and marks the peak ``+`` in each, where it lies in the
display convention (:func:`unimiss_monai.conventions.panel_points`): planes through the peak may show none of the
finding, and a reader must see where the map points."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unimiss_monai.conventions import display_panels, panel_points
from unimiss_monai.visualize import saliency_png

SHAPE, PEAK = (12, 20, 16), (3, 14, 5)  # (Z, X, Y): every axis of another length, the peak off every middle


def test_panel_points_are_where_the_voxel_shows_in_each_plane():
    volume = np.zeros(SHAPE, np.float32)
    volume[PEAK] = 1.0
    for (name, plane, _), point in zip(display_panels(volume, PEAK), panel_points(SHAPE, PEAK)):
        assert np.unravel_index(int(np.argmax(plane)), plane.shape) == point, name


def _panels(path) -> list[tuple[slice, slice]]:
    """The (rows, columns) box of each image panel of a saliency PNG, left to right: where the overlay tints it."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    tinted = (rgb.max(-1) - rgb.min(-1)) > 20
    cols = np.flatnonzero(tinted.any(0))
    boxes = []
    for run in np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1):
        rows = np.flatnonzero(tinted[:, run[0]:run[-1] + 1].any(1))
        boxes.append((slice(rows[0], rows[-1] + 1), slice(run[0], run[-1] + 1)))
    return boxes


def test_each_plane_marks_the_peak_where_it_lies(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=SHAPE).astype(np.float32)
    cam = np.full(SHAPE, 0.2, np.float32)
    cam[PEAK] = 1.0
    path = saliency_png(image, cam, tmp_path / "s.png", title="case", spacing=(2.0, 1.0, 1.5))
    rgb = np.asarray(Image.open(path).convert("RGB"))
    boxes = _panels(path)
    assert len(boxes) == 3
    for (rows, cols), (name, plane, _), (row, col) in zip(boxes, display_panels(cam, PEAK),
                                                          panel_points(SHAPE, PEAK)):
        white = np.argwhere((rgb[rows, cols] >= 250).all(-1))  # the mark: nothing else in a panel is pure white
        assert len(white), f"{name}: no mark"
        height, width = rows.stop - rows.start, cols.stop - cols.start
        expected = ((row + 0.5) * height / plane.shape[0], (col + 0.5) * width / plane.shape[1])
        assert white.mean(0) == pytest.approx(expected, abs=2.5), name
