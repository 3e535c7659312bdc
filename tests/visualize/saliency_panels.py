"""Measure the panels of a saliency PNG: shared by the visualize tests and the CT classification bundle's tests."""

from __future__ import annotations

import numpy as np
from PIL import Image


def panel_sizes(path) -> list[tuple[int, int]]:
    """``(rows, columns)`` of each image panel of a saliency PNG, left to right.

    A panel is where the jet overlay tints the grey image (its channels differ); titles and the white page are grey,
    so they are left out."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    tinted = (rgb.max(-1) - rgb.min(-1)) > 20
    cols = np.flatnonzero(tinted.any(0))
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    sizes = []
    for run in runs:
        rows = np.flatnonzero(tinted[:, run[0]:run[-1] + 1].any(1))
        sizes.append((int(rows[-1] - rows[0] + 1), int(run[-1] - run[0] + 1)))
    return sizes
