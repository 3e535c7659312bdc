"""The package's one geometry (``unimiss_monai.conventions``): layout constants and the display of network tensors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Transpose

from unimiss_monai.conventions import (
    CT_AXCODES, CT_TO_NETWORK, NETWORK_TO_CT, display_2d, display_panels, grey_levels, network_spacing,
)


def test_network_order_round_trip_and_spacing():
    x = torch.arange(2 * 3 * 4 * 5).reshape(1, 2, 3, 4, 5)[0:1, 0]  # (C, X, Y, Z) = (1, 3, 4, 5)
    there = x.permute(*CT_TO_NETWORK)
    assert there.shape == (1, 5, 3, 4)
    assert torch.equal(there.permute(*NETWORK_TO_CT), x)
    # an LPS-oriented volume of spacing (x, y, z) = (0.7, 0.8, 2.5) mm: network order (Z, X, Y)
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    img = Orientation(axcodes=CT_AXCODES)(MetaTensor(torch.zeros(1, 3, 4, 5), affine=affine))
    out = Transpose(CT_TO_NETWORK)(img)
    assert network_spacing(out.affine) == (2.5, 0.7, 0.8)
    assert network_spacing(None) is None


def test_lps_puts_the_patient_left_at_high_x():
    # RAS identity affine: voxel i grows to the patient's right; the marker at i = 0 is the patient's far left
    vol = torch.zeros(1, 4, 4, 4)
    vol[0, 0, 3, 3] = 1.0  # left, anterior, superior in RAS voxel terms
    out = Transpose(CT_TO_NETWORK)(Orientation(axcodes=CT_AXCODES)(MetaTensor(vol, affine=torch.eye(4))))
    z, x, y = np.argwhere(np.asarray(out[0]) > 0)[0]
    assert (z, x, y) == (3, 3, 0)  # superior = high Z, left = high X, anterior = low Y


def test_display_panels_orientation_and_aspect():
    vol = np.zeros((6, 8, 10))  # (Z, X, Y)
    vol[5, 7, 0] = 1.0  # superior, patient's left, anterior
    panels = dict((name, (img, aspect)) for name, img, aspect in display_panels(vol, (5, 7, 0), spacing=(3.0, 1.0, 1.5)))
    axial, coronal, sagittal = (panels[n][0] for n in ("axial", "coronal", "sagittal"))
    assert axial.shape == (10, 8) and np.argwhere(axial)[0].tolist() == [0, 7]  # top (anterior) right (left)
    assert coronal.shape == (6, 8) and np.argwhere(coronal)[0].tolist() == [0, 7]  # top (superior) right (left)
    assert sagittal.shape == (6, 10) and np.argwhere(sagittal)[0].tolist() == [0, 0]  # top, anterior on the left
    assert panels["axial"][1] == 1.5 and panels["coronal"][1] == 3.0 and panels["sagittal"][1] == 2.0
    img2d = np.zeros((8, 6))  # (X, Y)
    img2d[7, 0] = 1
    assert np.argwhere(display_2d(img2d))[0].tolist() == [0, 7]  # row 0, last column: top right


def test_a_structure_has_one_colour_in_every_picture(tmp_path):
    """The bundles' overlay PNGs, the evaluation grid and the report's legends colour a structure alike."""
    from PIL import Image

    from unimiss_monai.conventions import structure_colour
    from unimiss_monai.data.xray import write_overlay_png
    from unimiss_monai.report.palette import colour
    from unimiss_monai.visualize.overlay import save_overlay_grid

    heart = structure_colour("heart")
    assert colour("heart") == heart and structure_colour("lung_left") != heart
    # an unlisted structure's colour is the same in every process: Python's hash() of a name is not
    program = "from unimiss_monai.conventions import structure_colour; print(structure_colour('a structure of my own'))"
    runs = {subprocess.run([sys.executable, "-c", program], env={**os.environ, "PYTHONHASHSEED": seed},
                           capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert runs == {f"{structure_colour('a structure of my own')}\n"}, runs
    # a black image with the heart's mask everywhere: each pixel is alpha x the heart's colour, whatever its index
    masks = np.zeros((2, 40, 30), np.float32)
    masks[1] = 1
    png = write_overlay_png(tmp_path / "overlay.png", np.zeros((40, 30), np.float32), masks, ["lung_left", "heart"], 0.5)
    pixel = np.asarray(Image.open(png).convert("RGB"))[25, 5]
    assert np.abs(pixel.astype(int) - np.round(0.5 * np.asarray(heart))).max() <= 1
    # the grid's legend patches take the same colour (a 1x1 pixel swatch would need the figure's layout: read the
    # colour map the grid draws with instead)
    label = np.zeros((40, 30), np.int16)
    label[10:20, 10:20] = 2
    path = save_overlay_grid([("case", np.zeros((40, 30)), label, label)], ["lung_left", "heart"], tmp_path / "grid.png")
    rgb = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    blended = np.round(0.55 * np.asarray(heart))  # 55 % opaque over a black image
    assert (np.abs(rgb - blended).max(1) <= 2).any()


def test_every_grey_picture_is_windowed_alike_and_survives_a_nan_pixel():
    """The overlays the bundles write and the report's pictures scale grey by one rule: the window, else the 1st and
    99th percentiles of the finite values; a NaN pixel shows dark instead of turning the whole picture to noise."""
    from unimiss_monai.data.xray import overlay_rgb
    from unimiss_monai.report.images import grey_rgb

    ramp = np.linspace(0.0, 100.0, 101, dtype=np.float32).reshape(101, 1).repeat(3, axis=1)
    np.testing.assert_allclose(grey_levels(ramp, window=(25, 75))[[0, 50, 100], 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(grey_levels(ramp)[[1, 50, 99], 0], [0.0, 0.5, 1.0], atol=1e-6)
    spoiled = ramp.copy()
    spoiled[40, 1] = np.nan
    levels = grey_levels(spoiled)
    assert levels[40, 1] == 0.0 and np.array_equal(np.delete(levels.ravel(), 40 * 3 + 1),
                                                   np.delete(grey_levels(ramp).ravel(), 40 * 3 + 1))
    assert np.array_equal(grey_rgb(spoiled)[..., 0], (levels * 255).astype(np.uint8))
    overlay = overlay_rgb(spoiled, np.zeros((1, 101, 3)))  # (X, Y) in, rows x columns out
    assert np.array_equal(overlay[..., 0], (levels * 255).astype(np.uint8).T)


def test_no_structure_colour_is_a_grey_that_vanishes_on_bone():
    """Outlines are drawn on radiographs, DRRs and CT in grey: a named colour with no hue (the clavicles were white
    and light grey) looks like the bone it outlines."""
    from unimiss_monai.conventions import STRUCTURE_COLOURS

    chroma = {name: max(rgb) - min(rgb) for name, rgb in STRUCTURE_COLOURS.items()}
    assert min(chroma.values()) >= 90, sorted(chroma.items(), key=lambda kv: kv[1])[:3]
    assert len(set(STRUCTURE_COLOURS.values())) == len(STRUCTURE_COLOURS)  # and no two structures share one
