"""The DRR contact sheet's second row is a heat map of one quantity, the labelled thickness along each ray, on one
scale for every view and with a colour bar saying what it is (not structure colours, which it could not keep)."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from unimiss_monai.data.writers import save_contact_sheet


def test_the_thickness_row_has_one_scale_and_a_labelled_colour_bar(tmp_path, monkeypatch):
    bars, limits = [], []
    colorbar, imshow = Figure.colorbar, Axes.imshow

    def record_bar(self, mappable, *a, **kw):
        bars.append(kw.get("label"))
        return colorbar(self, mappable, *a, **kw)

    def record_image(self, x, *a, **kw):
        if kw.get("cmap") == "turbo":
            limits.append((kw.get("vmin"), kw.get("vmax")))
        return imshow(self, x, *a, **kw)

    monkeypatch.setattr(Figure, "colorbar", record_bar)
    monkeypatch.setattr(Axes, "imshow", record_image)
    images = np.zeros((2, 16, 16))
    thickness = np.zeros((2, 16, 16))
    thickness[0, 4:8, 4:8], thickness[1, 4:8, 4:8] = 10.0, 40.0
    path = save_contact_sheet(images, ["AP", "LAT_LEFT"], tmp_path / "sheet.png", overlays=thickness)
    assert path.stat().st_size > 0
    assert limits == [(0.0, 40.0), (0.0, 40.0)]  # one scale: 10 mm in one view is not drawn as the other's 40 mm
    assert bars == ["labelled tissue along the ray (mm)"]
    save_contact_sheet(images, ["AP", "LAT_LEFT"], tmp_path / "plain.png")
    assert bars == ["labelled tissue along the ray (mm)"]  # no thickness, no bar
