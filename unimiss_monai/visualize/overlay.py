"""Label overlays on images: masks blended onto a radiograph, and an image | truth | prediction grid per case.

Axis convention: arrays are ``(X, Y)`` as MONAI's readers return them (x, the column axis, first); pictures are
written rows x columns, as an image viewer shows them (:func:`unimiss_monai.conventions.display_2d`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from unimiss_monai.conventions import display_2d, structure_colour
from unimiss_monai.data.writers import save_bytes
# the radiograph overlay is written by a post-processing transform too, which may not import this room: it is
# defined with the radiograph IO and shown here, with the other overlays
from unimiss_monai.data.xray import OVERLAY_COLOURS, overlay_rgb, write_overlay_png
from unimiss_monai.visualize.plots import figure_png

__all__ = ["OVERLAY_COLOURS", "overlay_rgb", "representative_slice", "save_overlay_grid", "write_overlay_png"]


def representative_slice(image: np.ndarray, label: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D ``(X, Y)`` views of a case: a 2D input itself; a ``(Z, X, Y)`` network-order CT
    (:mod:`unimiss_monai.conventions`) as the axial slice with the most labelled voxels."""
    if image.ndim == 2:
        return image, label, pred
    area = (label > 0).reshape(label.shape[0], -1).sum(1) + (pred > 0).reshape(pred.shape[0], -1).sum(1)
    k = int(np.argmax(area)) if area.any() else label.shape[0] // 2
    return image[k], label[k], pred[k]


def save_overlay_grid(
    views: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], structure_names: Sequence[str], path: str | os.PathLike
) -> str:
    """PNG grid, one row per case: image | ground truth overlay | prediction overlay.

    Args:
        views: ``(case name, image (X, Y), label map (X, Y), predicted label map (X, Y))`` per row, shown in the
            package's display convention (:func:`unimiss_monai.conventions.display_2d`); label maps hold
            0 for background and ``i`` for ``structure_names[i - 1]``.
        structure_names: names for the legend.
        path: output PNG path (written atomically).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    # each structure in its colour of every picture (conventions.structure_colour), half transparent
    cmap = ListedColormap([(0, 0, 0, 0)] + [(*(c / 255 for c in structure_colour(n)), 0.55) for n in structure_names])
    rows = max(1, len(views))
    fig = Figure(figsize=(9, 3 * rows + 0.6))
    axes = fig.subplots(rows, 3, squeeze=False)
    for r, (name, image, label, pred) in enumerate(views):
        lo, hi = np.percentile(image, [1, 99]) if image.size else (0, 1)
        for c, (title, overlay) in enumerate((("image", None), ("ground truth", label), ("prediction", pred))):
            ax = axes[r, c]
            ax.imshow(display_2d(image), cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
            if overlay is not None:
                ax.imshow(display_2d(overlay), cmap=cmap, vmin=0, vmax=len(structure_names), interpolation="nearest")
            ax.set_title(f"{name}: {title}" if c == 0 else title, fontsize=8)
            ax.axis("off")
    handles = [Patch(color=cmap(i + 1), label=n) for i, n in enumerate(structure_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.12, 1, 1))
    save_bytes(figure_png(fig, dpi=100, tight=False), path)
    return str(path)
