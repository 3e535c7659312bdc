"""The overlay grid's legend shows every structure, the white one (clavicle_right) included: each patch has a dark
edge on the white figure."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from unimiss_monai.visualize.overlay import save_overlay_grid


def test_a_white_structure_shows_in_the_legend(tmp_path, monkeypatch):
    shown = []
    legend = Figure.legend
    monkeypatch.setattr(Figure, "legend", lambda self, *a, **kw: shown.extend(kw.get("handles", [])) or legend(self, *a, **kw))
    image, label = np.zeros((32, 32), np.float32), np.zeros((32, 32), np.int64)
    save_overlay_grid([("case", image, label, label)], ["clavicle_right", "heart"], tmp_path / "grid.png")
    assert [h.get_label() for h in shown] == ["clavicle_right", "heart"]
    white = next(h for h in shown if h.get_label() == "clavicle_right")
    assert white.get_facecolor()[:3] == (1.0, 1.0, 1.0)
    assert max(to_rgba(white.get_edgecolor())[:3]) < 0.5 and white.get_linewidth() > 0  # a dark outline on white
