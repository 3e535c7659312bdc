"""Pictures of 2D images with non-square pixels (resized slab DRRs) show their true proportions: the PNG preview is
resampled to square pixels, the contact sheet draws each image with its pixel aspect, and the DRR bundle's slab
previews follow the pixel spacing their NIfTI affine records."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.axes import Axes
from PIL import Image

from unimiss_monai.conventions import display_shape
from unimiss_monai.data import make_ct_phantom, phantom_affine, save_nifti
from unimiss_monai.data.writers import save_contact_sheet, save_png


def test_display_shape_keeps_the_longer_side_and_true_proportions():
    assert display_shape((224, 224), (0.25, 2.0)) == (28, 224)  # 56 mm tall, 448 mm wide
    assert display_shape((100, 50), (1.0, 4.0)) == (50, 100)  # the physically longer side gets the larger count
    assert display_shape((30, 40), 1.5) == (30, 40)
    with pytest.raises(ValueError, match="pixel_spacing must be positive"):
        display_shape((4, 4), (0.0, 1.0))


def test_png_of_anisotropic_pixels_has_the_physical_aspect(tmp_path):
    image = np.zeros((40, 40), np.uint8)
    image[10:30, 10:30] = 255  # a 20 x 20 pixel square: 10 mm tall, 40 mm wide
    save_png(image, tmp_path / "p.png", pixel_spacing=(0.5, 2.0))
    png = np.asarray(Image.open(tmp_path / "p.png"))
    assert png.shape == (10, 40)
    rows, cols = np.nonzero(png > 127)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert width / height == pytest.approx(4.0, rel=0.25)
    save_png(image, tmp_path / "square.png", pixel_spacing=0.7)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "square.png")), image)  # square pixels: untouched


def test_contact_sheet_draws_each_image_with_its_pixel_aspect(tmp_path, monkeypatch):
    aspects, imshow = [], Axes.imshow

    def record(self, x, *a, **kw):
        aspects.append(kw.get("aspect"))
        return imshow(self, x, *a, **kw)

    monkeypatch.setattr(Axes, "imshow", record)
    images = np.zeros((2, 12, 12))
    save_contact_sheet(images, ["AP", "LAT_LEFT"], tmp_path / "s.png", pixel_spacing=[(0.5, 2.0), (1.0, 1.0)])
    assert aspects == [0.25, 1.0]


def test_slab_previews_show_the_slab_in_true_proportions(tmp_path):
    import nibabel as nib

    from unimiss_monai.engines import DRRGenerator

    shape, spacing = (32, 28, 20), (8.0, 8.0, 10.0)
    p = make_ct_phantom(shape, affine=phantom_affine(spacing, shape), noise_hu=0)
    save_nifti(p.hu, p.affine, tmp_path / "data" / "ct.nii.gz")
    run = DRRGenerator(tmp_path / "data", tmp_path / "out", views=["AP"], slab_depth=50.0,
                       slab_detector_shape=(24, 24), progress=False).run()
    pair = run["training"][0]
    stored = nib.load(tmp_path / "out" / pair["drr"])
    d_col, d_row = np.linalg.norm(stored.affine[:3, :2], axis=0)  # stored (W, H): columns first
    assert d_row < d_col / 2  # a thin slab on a 24 x 24 grid: far from square pixels
    png = np.asarray(Image.open(tmp_path / "out" / pair["preview"]))
    assert png.shape == display_shape((24, 24), (d_row, d_col)) != (24, 24)
    assert png.shape[0] / png.shape[1] == pytest.approx(d_row / d_col, abs=1.0 / png.shape[1])
