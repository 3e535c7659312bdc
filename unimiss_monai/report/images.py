"""Pixel helpers for the report's pictures: grey scaling, per-structure outlines, figures as PNG bytes.

Arrays here are already in display order (rows x columns, :func:`unimiss_monai.conventions.display_2d` /
:func:`~unimiss_monai.conventions.display_panels` applied by the caller), so nothing in this module transposes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from unimiss_monai.conventions import grey_levels
from unimiss_monai.visualize.plots import figure_png  # noqa: F401 - the report's sections take it from here

from .palette import colour

__all__ = ["draw_outlines", "figure_png", "grey_rgb", "legend_below", "legend_handles", "outline", "resize_nearest"]


def grey_rgb(image: np.ndarray, window: Sequence[float] | None = None, percentiles: Sequence[float] = (1, 99)) -> np.ndarray:
    """``(rows, cols)`` image -> ``(rows, cols, 3)`` uint8 grey, scaled to ``window`` (e.g. a HU window) or, without
    one, to the image's ``percentiles`` (radiographs and DRRs have no fixed unit)."""
    scaled = grey_levels(image, window, percentiles)
    return np.repeat((scaled * 255).astype(np.uint8)[..., None], 3, axis=-1)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The boundary pixels of a binary ``(rows, cols)`` mask: the mask minus its erosion, ``width`` pixels thick."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    eroded = ndimage.binary_erosion(mask, iterations=max(1, int(width)), border_value=0)
    return mask & ~eroded


def resize_nearest(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes to ``shape`` (rows, cols): masks keep their values."""
    array = np.asarray(array)
    rows = np.minimum((np.arange(shape[0]) + 0.5) * array.shape[0] / shape[0], array.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * array.shape[1] / shape[1], array.shape[1] - 1).astype(int)
    return array[rows][:, cols]


def draw_outlines(rgb: np.ndarray, masks: Mapping[str, np.ndarray], width: int | None = None,
                  fill_alpha: float = 0.0) -> np.ndarray:
    """Draw each structure's outline in its palette colour on a copy of ``rgb`` ``(rows, cols, 3)`` uint8.

    Args:
        rgb: the picture.
        masks: structure name -> binary ``(rows, cols)`` mask on the picture's grid (resized nearest when not).
        width: outline width in pixels; defaults to about 1/300 of the picture's larger side (at least 1), so
            outlines stay visible when a large radiograph is shown small.
        fill_alpha: optional faint fill inside each outline (0 = outlines only).
    """
    out = np.array(rgb, dtype=np.float32, copy=True)
    width = width if width is not None else max(1, round(max(out.shape[:2]) / 300))
    for name, mask in masks.items():
        mask = np.asarray(mask) > 0
        if mask.shape != out.shape[:2]:
            mask = resize_nearest(mask, out.shape[:2])
        c = np.asarray(colour(name), dtype=np.float32)
        if fill_alpha > 0:
            out[mask] = (1 - fill_alpha) * out[mask] + fill_alpha * c
        out[outline(mask, width)] = c
    return out.astype(np.uint8)


def legend_handles(names: Sequence[str]):
    """Matplotlib legend patches, one per structure, in the palette colours."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=np.asarray(colour(n)) / 255, edgecolor="black", linewidth=0.5, label=n) for n in names]


def legend_below(fig, names: Sequence[str], ncol: int = 6, fontsize: int = 9) -> None:
    """One legend of structure colours just under the lowest picture (``figure_png`` crops to fit it).

    Call it after the layout is set (``subplots_adjust``): pictures shown with equal aspect shrink inside their axes,
    so the legend goes under where they are drawn, not under the figure's empty margin.
    """
    if not names:
        return
    for ax in fig.axes:
        ax.apply_aspect()
    bottom = min((ax.get_position().y0 for ax in fig.axes), default=0.0)
    fig.legend(handles=legend_handles(names), loc="upper center", bbox_to_anchor=(0.5, bottom - 0.005),
               ncol=max(1, min(ncol, len(names))), fontsize=fontsize, frameon=False)


