"""Saliency PNGs keep the physical proportions of what they show: each panel's height / width is the plane's extent
in mm, from the spacing given, in the display convention of ``unimiss_monai.conventions``."""

from __future__ import annotations

import numpy as np
import pytest
from saliency_panels import panel_sizes

from unimiss_monai.visualize import saliency_png


def _volume(shape):
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape).astype(np.float32)
    cam = np.zeros(shape, np.float32)
    cam[tuple(s // 2 for s in shape)] = 1.0  # the planes go through the middle
    return image, cam


def test_anisotropic_volume_panels_have_true_proportions(tmp_path):
    shape, spacing = (16, 32, 24), (6.0, 1.5, 4.0)  # (Z, X, Y): 96 mm deep, 48 mm wide, 96 mm front to back
    image, cam = _volume(shape)
    sizes = panel_sizes(saliency_png(image, cam, tmp_path / "s.png", title="case", spacing=spacing))
    extent = np.multiply(shape, spacing)  # (Z, X, Y) mm
    # axial: rows Y, columns X; coronal: rows Z, columns X; sagittal: rows Z, columns Y
    expected = [extent[2] / extent[1], extent[0] / extent[1], extent[0] / extent[2]]
    assert len(sizes) == 3
    for (rows, cols), ratio, name in zip(sizes, expected, ("axial", "coronal", "sagittal")):
        assert rows / cols == pytest.approx(ratio, rel=0.05), f"{name} panel {rows} x {cols} px, expected h/w {ratio}"


def test_2d_image_with_rectangular_pixels(tmp_path):
    image, cam = _volume((40, 20))  # (X, Y): 40 columns of 1 mm, 20 rows of 3 mm
    (rows, cols), = panel_sizes(saliency_png(image, cam, tmp_path / "s.png", spacing=(1.0, 3.0)))
    assert rows / cols == pytest.approx(60 / 40, rel=0.05)


def test_spacing_of_the_wrong_length_or_sign_is_refused(tmp_path):
    image, cam = _volume((8, 16, 16))
    for bad in ((1.0, 1.0), (1.0, -2.0, 1.0), (1.0, float("nan"), 1.0)):
        with pytest.raises(ValueError, match="spacing must be 3 positive mm"):
            saliency_png(image, cam, tmp_path / "bad.png", spacing=bad)
