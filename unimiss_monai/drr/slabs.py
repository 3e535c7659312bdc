"""UniMiSS+ slab mode: consecutive axial slabs of a CT, each with its own affine, and one DRR per slab."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unimiss_monai.drr.geometry import ConeBeam
from unimiss_monai.drr.volume import as_affine

__all__ = ["Slab", "superior_axis", "split_slabs", "fit_slab_detector", "render_slabs"]


@dataclass
class Slab:
    """Voxels ``start:stop`` of a CT along its superior-inferior voxel ``axis``, with the slab's own affine."""

    volume: np.ndarray | torch.Tensor
    affine: np.ndarray
    axis: int
    start: int
    stop: int


def superior_axis(affine) -> int:
    """The voxel axis most aligned with the world superior-inferior (z) axis."""
    a = as_affine(affine)
    return int(np.argmax(np.abs(a[2, :3]) / np.linalg.norm(a[:3, :3], axis=0)))


def split_slabs(volume, affine, slab_thickness: int = 24, stride: int | None = None) -> list[Slab]:
    """Split a ``(X, Y, Z)`` CT into slabs of ``slab_thickness`` slices along its superior-inferior axis.

    Slabs start every ``stride`` slices (default ``slab_thickness``: no overlap). When the slices do not divide
    evenly, the last slab is aligned with the end of the volume (so every slab has the same thickness and the union
    covers the volume); a volume thinner than one slab gives one slab of its full depth. Each slab's affine maps its
    own voxel ``(0, 0, 0)`` to the world position of the original voxel it came from.
    """
    aff = as_affine(affine)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (X, Y, Z), got shape {tuple(volume.shape)}")
    stride = slab_thickness if stride is None else int(stride)
    if slab_thickness < 1 or stride < 1:
        raise ValueError(f"slab_thickness and stride must be >= 1, got {slab_thickness}, {stride}")
    axis = superior_axis(aff)
    n = volume.shape[axis]
    thick = min(slab_thickness, n)
    starts = list(range(0, n - thick + 1, stride))
    if starts[-1] + thick < n:
        starts.append(n - thick)
    slabs = []
    for s in starts:
        index = [slice(None)] * 3
        index[axis] = slice(s, s + thick)
        shift = np.eye(4)
        shift[axis, 3] = s
        slabs.append(Slab(volume[tuple(index)], aff @ shift, axis, s, s + thick))
    return slabs


def fit_slab_detector(slab: Slab, pixel_spacing: float | Sequence[float] = 1.5625, sdd: float = 1020.0,
                      sid: float = 850.0, margin_mm: float = 0.0) -> tuple[int, int]:
    """Detector ``(H, W)`` of whole pixels covering a slab's magnified extent (plus ``margin_mm`` on each side):
    height along the superior axis, width across it. ``pixel_spacing`` is mm, ``(row, col)`` or a scalar for square
    pixels: rows step along the superior axis (row 0 at the head, :mod:`unimiss_monai.conventions`), so the height
    counts row spacings and the width column spacings. The magnification is taken at the slab's nearest point to the
    source (``sdd / (sid - half diagonal)``), so any view about the superior axis fits.
    """
    # the geometry's own reading of a spacing (a scalar is square) and its checks
    d_row, d_col = ConeBeam(pixel_spacing=pixel_spacing, sdd=sdd, sid=sid).pixel_spacing
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in slab.volume.shape], indexing="ij")).reshape(3, -1)
    world = slab.affine[:3, :3] @ corners + slab.affine[:3, 3:4]
    size = world.max(1) - world.min(1)
    half_diagonal = 0.5 * float(np.linalg.norm(size))
    if sid <= half_diagonal:  # the source would sit inside the slab: no detector can hold its projection
        raise ValueError(f"sid {sid:g} mm must exceed the slab's half diagonal {half_diagonal:.1f} mm (the source would "
                         "lie inside the slab); raise sid (and sdd) or render thinner slabs")
    extent = size * sdd / (sid - half_diagonal)
    height = extent[2] + 2 * margin_mm  # superior-inferior
    width = max(extent[0], extent[1]) + 2 * margin_mm
    return max(2, int(np.ceil(height / d_row))), max(2, int(np.ceil(width / d_col)))


def render_slabs(
    volume,
    affine,
    slab_thickness: int = 24,
    stride: int | None = None,
    view="AP",
    output_shape=(224, 224),
    pixel_spacing: float | Sequence[float] = 1.5625,
    margin_mm: float = 0.0,
    return_spacing: bool = False,
    **render_kwargs,
) -> torch.Tensor | tuple[torch.Tensor, np.ndarray]:
    """One DRR per slab, resized to ``output_shape``: float32 ``(S, H, W)``.

    The detector is fitted to each slab (:func:`fit_slab_detector`): centred on the slab, with enough ``pixel_spacing``
    (mm, ``(row, col)`` or a scalar for square) pixels to cover the slab's magnified extent (plus ``margin_mm``) across
    and along the superior axis, then resized (area-averaged when shrinking, bilinear when enlarging).
    ``render_kwargs`` go to :func:`unimiss_monai.drr.render` (sdd, sid, method, output, volume_unit...).

    With ``return_spacing=True`` it returns ``(images, spacing)``: ``spacing`` ``(S, 2)`` float64 is the detector
    pixel size (row, col) in mm of each resized image, i.e. the fitted detector's size divided by ``output_shape``.
    """
    from unimiss_monai.drr.render import render

    sdd, sid = render_kwargs.get("sdd", 1020.0), render_kwargs.get("sid", 850.0)
    d_row, d_col = ConeBeam(pixel_spacing=pixel_spacing, sdd=sdd, sid=sid).pixel_spacing
    images, spacing = [], []
    for slab in split_slabs(volume, affine, slab_thickness, stride):
        shape = fit_slab_detector(slab, (d_row, d_col), sdd, sid, margin_mm)
        img = render(slab.volume, slab.affine, views=(view,), detector_shape=shape, pixel_spacing=(d_row, d_col),
                     **render_kwargs)
        mode = "area" if shape[0] >= output_shape[0] and shape[1] >= output_shape[1] else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        images.append(F.interpolate(img[None], size=tuple(output_shape), mode=mode, **kw)[0, 0])
        spacing.append((shape[0] * d_row / output_shape[0], shape[1] * d_col / output_shape[1]))
    images = torch.stack(images)
    return (images, np.asarray(spacing, dtype=np.float64)) if return_spacing else images
