"""Label overlays on images: masks blended onto a radiograph, and an image | truth | prediction grid per case.

Axis convention: arrays are ``(X, Y)`` as MONAI's readers return them (x, the column axis, first); pictures are
written rows x columns, as an image viewer shows them (:func:`unimiss_monai.conventions.display_2d`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from unimiss_monai.conventions import structure_colour
from unimiss_monai.data.writers import save_bytes
# the radiograph overlay is written by a post-processing transform too, which may not import this room: it is
# defined with the radiograph IO and shown here, with the other overlays
from unimiss_monai.data.xray import OVERLAY_COLOURS, overlay_rgb, write_overlay_png
from unimiss_monai.visualize.plots import figure_png

__all__ = ["OVERLAY_COLOURS", "as_masks", "overlay_rgb", "representative_slice", "save_overlay_grid", "write_overlay_png"]


def as_masks(label: np.ndarray, num_structures: int, spatial_ndim: int) -> np.ndarray:
    """``(S, *spatial)`` boolean masks of ``label``: a label map ``(*spatial)`` (0 background, ``i`` for structure
    ``i``), or masks already, which may overlap (multi-label radiographs: the heart over the lungs)."""
    label = np.asarray(label)
    if label.ndim == spatial_ndim + 1:
        return label > 0.5
    return np.stack([label == i for i in range(1, num_structures + 1)]) if num_structures else label[None] > 0


def representative_slice(image: np.ndarray, label: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D ``(X, Y)`` views of a case: a 2D input itself; a ``(Z, X, Y)`` network-order CT
    (:mod:`unimiss_monai.conventions`) as the axial slice with the most labelled voxels. ``label`` and ``pred`` are
    label maps of the image's shape, or ``(S, *spatial)`` masks (sliced alike)."""
    if image.ndim == 2:
        return image, label, pred

    def area(x):  # labelled voxels per axial slice
        x = np.asarray(x)
        x = (x > 0.5).any(0) if x.ndim == image.ndim + 1 else x > 0
        return x.reshape(x.shape[0], -1).sum(1)

    counts = area(label) + area(pred)
    k = int(np.argmax(counts)) if counts.any() else image.shape[0] // 2

    def cut(x):
        x = np.asarray(x)
        return x[:, k] if x.ndim == image.ndim + 1 else x[k]

    return image[k], cut(label), cut(pred)


def save_overlay_grid(
    views: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], structure_names: Sequence[str], path: str | os.PathLike
) -> str:
    """PNG grid, one row per case: image | ground truth overlay | prediction overlay.

    Args:
        views: ``(case name, image (X, Y), truth, prediction)`` per row, shown in the package's display convention
            (:func:`unimiss_monai.conventions.display_2d`). Truth and prediction are label maps ``(X, Y)`` (0 for
            background, ``i`` for ``structure_names[i - 1]``) or ``(S, X, Y)`` masks, whose overlaps show both
            structures' colours.
        structure_names: names for the legend; each structure in its colour of every picture
            (:func:`unimiss_monai.conventions.structure_colour`).
        path: output PNG path (written atomically).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colours = [structure_colour(n) for n in structure_names]
    rows = max(1, len(views))
    fig = Figure(figsize=(9, 3 * rows + 0.6))
    axes = fig.subplots(rows, 3, squeeze=False)
    for r, (name, image, label, pred) in enumerate(views):
        image = np.asarray(image, dtype=np.float32)
        for c, (title, overlay) in enumerate((("image", None), ("ground truth", label), ("prediction", pred))):
            masks = as_masks(overlay if overlay is not None else np.zeros(image.shape), len(colours), image.ndim)
            ax = axes[r, c]
            # the same grey scaling in all three panels (overlay_rgb's), the masks blended on top
            ax.imshow(overlay_rgb(image, masks, alpha=0.55, colours=colours or ((255, 255, 255),)), interpolation="nearest")
            ax.set_title(f"{name}: {title}" if c == 0 else title, fontsize=8)
            ax.axis("off")
    # a dark edge, as in the report's legends: a pale colour would vanish on the white figure
    handles = [Patch(facecolor=tuple(v / 255 for v in col), edgecolor="black", linewidth=0.5, label=n)
               for col, n in zip(colours, structure_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, max(1, len(handles))), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.12, 1, 1))
    save_bytes(figure_png(fig, dpi=100, tight=False), path)
    return str(path)
