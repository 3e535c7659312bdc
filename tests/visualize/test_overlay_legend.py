"""The overlay grid's legend shows every structure in its colour, each patch with a dark edge, so that a pale colour
(the spine's light yellow) shows on the white figure too."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from unimiss_monai.conventions import structure_colour
from unimiss_monai.visualize.overlay import save_overlay_grid


def test_every_structure_shows_in_the_legend_with_a_dark_edge(tmp_path, monkeypatch):
    shown = []
    legend = Figure.legend
    monkeypatch.setattr(Figure, "legend", lambda self, *a, **kw: shown.extend(kw.get("handles", [])) or legend(self, *a, **kw))
    image, label = np.zeros((32, 32), np.float32), np.zeros((32, 32), np.int64)
    save_overlay_grid([("case", image, label, label)], ["spine", "heart"], tmp_path / "grid.png")
    assert [h.get_label() for h in shown] == ["spine", "heart"]
    for patch in shown:
        assert patch.get_facecolor()[:3] == tuple(v / 255 for v in structure_colour(patch.get_label()))
        assert max(to_rgba(patch.get_edgecolor())[:3]) < 0.5 and patch.get_linewidth() > 0
