"""A saliency PNG says how coarse its map is (the token grid and each cell's size) and marks no ``+`` where the map
has no single peak: the smoke CT classifier's maps are 4 x 1 x 1 cells, flat in-plane, and their ``+`` landed on the
top-left corner; an all-zero map got one at voxel (0, 0, 0)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from test_saliency_peak_mark import _panels

from unimiss_monai.visualize import attention_rollout, grad_cam, saliency_png
from unimiss_monai.visualize.saliency import _no_single_peak, map_grid

SIZE, SPACING = (16, 32, 32), (5.0, 2.8125, 2.8125)  # the smoke input: 80 x 90 x 90 mm


@pytest.fixture
def titles(monkeypatch):
    """The titles the pictures were given, as drawn."""
    said: list[str] = []
    real = Figure.suptitle

    def keep(self, text, **kwargs):
        said.append(text)
        return real(self, text, **kwargs)

    monkeypatch.setattr(Figure, "suptitle", keep)
    return said


def _marked(path) -> bool:
    """Whether a panel of the PNG shows the white ``+`` (nothing else inside a panel is pure white)."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return any((rgb[rows, cols] >= 250).all(-1).sum() > 3 for rows, cols in _panels(path))


def test_smoke_network_maps_name_their_grid_and_mark_no_peak(tmp_path, titles, caplog):
    from unimiss_monai.networks import UniMissClassifier, tiny_overrides

    torch.manual_seed(0)
    net = UniMissClassifier(3, 1, 3, img_size=SIZE, **tiny_overrides("mitplus"))
    x = torch.randn(1, 1, *SIZE)
    grid = map_grid(net, SIZE)
    assert grid == (4, 1, 1)
    maps = {"gradcam": grad_cam(net, x)[0], "rollout": attention_rollout(net, x)[0],
            "zero": torch.zeros(SIZE)}  # Grad-CAM of a class with no positive evidence
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.visualize.saliency"):
        for name, cam in maps.items():
            path = saliency_png(x[0, 0], cam, tmp_path / "saliency" / f"{name}.png", title=name, spacing=SPACING,
                                grid=grid)
            assert not _marked(path), name
    for title, reason in zip(titles, ("flat in-plane", "flat in-plane", "all zero: no positive evidence")):
        lines = title.splitlines()
        assert lines[1] == "map grid 4 x 1 x 1, cells 20 x 90 x 90 mm (Z x X x Y)", title
        assert lines[2].startswith(f"no single peak ({reason}") and lines[2].endswith("): no + marked"), title
    # said in the log too, once for the run's saliency folder, with the grid
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "gradcam.png: the saliency map has no single peak (flat in-plane), so no + marks one" in warning
    assert "map grid 4 x 1 x 1, cells 20 x 90 x 90 mm" in warning


def test_a_map_with_a_clear_peak_is_still_marked(tmp_path, titles, caplog):
    shape = (12, 20, 16)
    cam = np.full(shape, 0.2, np.float32)
    cam[3, 14, 5] = 1.0
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.visualize.saliency"):
        path = saliency_png(image, cam, tmp_path / "s.png", title="case", spacing=(2.0, 1.0, 1.5), grid=(6, 5, 4))
    assert _marked(path)
    assert titles == ["case\nmap grid 6 x 5 x 4, cells 4 x 4 x 6 mm (Z x X x Y)"]
    assert not caplog.records


def _diagonal_3d(n: int = 8) -> np.ndarray:
    cam = np.zeros((n, n, n), np.float32)
    cam[np.arange(n), np.arange(n), np.arange(n)] = 1.0
    return cam


def test_tied_peaks_or_a_diagonal_ridge_are_not_called_flat():
    # they reach every row and column without the map being one value, or its maximum a whole slab along an axis
    two = np.zeros((8, 8), np.float32)
    two[0, 0] = two[7, 7] = 1.0
    assert _no_single_peak(np.eye(8, dtype=np.float32)) == ""
    assert _no_single_peak(two) == ""
    assert _no_single_peak(_diagonal_3d()) == ""
    assert _no_single_peak(np.ones((8, 8), np.float32)) == "flat: one value everywhere"
    assert _no_single_peak(np.ones((4, 8, 8), np.float32)) == "flat: one value everywhere"


def test_only_a_whole_slab_at_the_maximum_spans_an_axis():
    ridge = np.repeat(np.eye(8, dtype=np.float32)[None], 4, axis=0)  # the same X-Y diagonal on every Z plane
    assert _no_single_peak(ridge) == "its maximum spans the whole Z axis"
    row = np.zeros((8, 8), np.float32)
    row[3] = 1.0
    assert _no_single_peak(row) == "its maximum spans the whole Y axis"
    plane = np.zeros((4, 8, 8), np.float32)
    plane[1:3] = 1.0
    assert _no_single_peak(plane) == "flat in-plane"


def test_a_diagonal_map_is_marked(tmp_path, titles, caplog):
    image = np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.visualize.saliency"):
        path = saliency_png(image, _diagonal_3d(), tmp_path / "s.png", title="case")
    assert _marked(path)
    assert titles == ["case"] and not caplog.records


def test_the_writer_gives_the_map_its_grid(monkeypatch, tmp_path):
    """The inference handler passes the network's map grid to the picture."""
    import unimiss_monai.visualize.saliency as saliency
    from unimiss_monai.handlers import ClassProbabilityWriter
    from unimiss_monai.networks import UniMissClassifier, tiny_overrides

    seen = []
    monkeypatch.setattr(saliency, "saliency_png", lambda *args, **kwargs: seen.append(kwargs) or str(args[2]))
    net = UniMissClassifier(3, 1, 3, img_size=SIZE, **tiny_overrides("mitplus"))
    writer = ClassProbabilityWriter(tmp_path, ["a", "b", "c"], saliency=True, network=net)
    writer._save_saliency(torch.randn(1, *SIZE), [0.2, 0.5, 0.3], "case")
    assert seen[0]["grid"] == (4, 1, 1)
