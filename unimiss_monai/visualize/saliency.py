"""Grad-CAM saliency for transformer classifiers (tokens) and CNNs (feature maps), 2D or 3D, and its PNG rendering.

Grad-CAM (Selvaraju et al., ICCV 2017): weight each channel of a layer's activation by the mean gradient of the
class score over positions, sum over channels, keep the positive part, upsample to the input. For
:class:`~unimiss_monai.networks.UniMissClassifier` the layer is the input of the encoder's last transformer block:
a CLS-pooled head reads only the CLS token of the block's *output*, so the patch tokens there get no gradient,
whereas the block's input reaches the CLS token through attention.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unimiss_monai.utils.once import first_time

__all__ = ["default_target_layer", "grad_cam", "map_grid", "saliency_png"]

logger = logging.getLogger(__name__)
# a map value this close to its maximum counts as the maximum: the maps are scaled to [0, 1] in float32
_AT_PEAK = 1e-4


def default_target_layer(model: nn.Module) -> nn.Module:
    """The last transformer block of a UniMiSS classifier's encoder (``model.encoder.blocks[-1][-1]``)."""
    blocks = getattr(getattr(model, "encoder", None), "blocks", None)
    if blocks is None:
        raise ValueError(f"grad_cam: {type(model).__name__} has no encoder.blocks; pass target_layer explicitly")
    return blocks[-1][-1]


def grad_cam(
    model: nn.Module, x: torch.Tensor, class_index: int | Sequence[int] | None = None,
    target_layer: nn.Module | None = None, grid: Sequence[int] | None = None,
) -> torch.Tensor:
    """Grad-CAM maps at the input's resolution.

    Args:
        model: a classifier returning logits (B, C).
        x: input (B, C_in, *spatial), 2D or 3D.
        class_index: class of each map (an int for all, or B ints). Defaults to each case's top class.
        target_layer: module whose *input* is the activation: tokens (B, [1 +] N, D) with N = prod(grid) (a leading
            CLS token is dropped) or a feature map (B, D, *grid). Defaults to :func:`default_target_layer`.
        grid: patch grid of token activations. Defaults to the input size over a UniMiSS encoder's total stride.

    Returns:
        (B, *spatial) float maps in [0, 1] (all zero where the class has no positive evidence). The model's
        parameter gradients are left as they were.
    """
    layer = default_target_layer(model) if target_layer is None else target_layer
    captured: dict[str, torch.Tensor] = {}

    def keep_input(_module, args):
        act = args[0]
        if not act.requires_grad:  # nothing trainable before the layer: make its input a leaf we can differentiate
            act = act.detach().requires_grad_(True)
        captured["act"] = act
        return (act, *args[1:])

    was_training = model.training
    saved_grads = [(p, p.grad) for p in model.parameters()]
    handle = layer.register_forward_pre_hook(keep_input)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x.detach().float())
            idx = logits.argmax(1) if class_index is None else torch.as_tensor(class_index, device=logits.device).expand(logits.shape[0])
            score = logits.gather(1, idx.long().view(-1, 1)).sum()
            act = captured["act"]
            (grad,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
        model.train(was_training)
        for p, g in saved_grads:
            p.grad = g
    spatial = tuple(x.shape[2:])
    act, grad = act.detach(), grad.detach()
    if act.ndim == 3:  # tokens (B, [1 +] N, D) -> feature map (B, D, *grid)
        grid = _token_grid(model, spatial, grid)
        if act.shape[1] not in (math.prod(grid), math.prod(grid) + 1):
            raise ValueError(f"grad_cam: {act.shape[1]} tokens do not fit the patch grid {grid} (+ CLS)")
        act, grad = (t[:, -math.prod(grid):].transpose(1, 2).reshape(t.shape[0], -1, *grid) for t in (act, grad))
    weights = grad.flatten(2).mean(-1)  # (B, D)
    cam = torch.relu(torch.einsum("bd,bd...->b...", weights, act))[:, None]
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    cam = nn.functional.interpolate(cam, size=spatial, mode=mode, align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * len(spatial)))
    return (cam / peak).clamp(0, 1)


def _token_grid(model: nn.Module, spatial: tuple[int, ...], grid: Sequence[int] | None) -> tuple[int, ...]:
    if grid is not None:
        return tuple(int(g) for g in grid)
    config = getattr(getattr(model, "encoder", None), "config", None)
    if config is None:
        raise ValueError("grad_cam: the target layer gives tokens; pass grid= (the patch grid of the input)")
    from unimiss_monai.networks import total_stride

    return tuple(s // t for s, t in zip(spatial, total_stride(config, len(spatial))))


def map_grid(model: nn.Module, spatial: Sequence[int]) -> tuple[int, ...] | None:
    """The cells of a UniMiSS classifier's Grad-CAM (:func:`default_target_layer`) and attention-rollout maps of an
    input of size ``spatial``: the last stage's token grid, the input size over the encoder's total stride (8 x 2 x 2
    for a 32 x 64 x 64 CT). The maps are these cells upsampled, so they cannot point finer than one cell. ``None`` for
    a network without a UniMiSS encoder."""
    if getattr(getattr(model, "encoder", None), "config", None) is None:
        return None
    return _token_grid(model, tuple(int(s) for s in spatial), None)


def saliency_png(
    image: np.ndarray | torch.Tensor, cam: np.ndarray | torch.Tensor, path: str | os.PathLike, title: str = "",
    spacing: Sequence[float] | None = None, grid: Sequence[int] | None = None,
) -> str:
    """Write the saliency map over the image as a PNG (atomically), in the package's display convention.

    Args:
        image: ``(X, Y)`` 2D image or ``(Z, X, Y)`` CT in network order (:mod:`unimiss_monai.conventions`); any
            intensity range (shown min-max scaled).
        cam: map of the same shape, in [0, 1].
        path: output file. title: figure title (e.g. the class and its probability).
        spacing: voxel spacing in mm, ``(Z, X, Y)`` of a 3D input (:func:`~unimiss_monai.conventions.network_spacing`)
            or ``(X, Y)`` of a 2D one, so that every panel shows its true proportions. It must be the spacing of the
            array as given (after any resize), which a MetaTensor's affine records when the volume is resized before
            it is transposed to network order. Defaults to isotropic.
        grid: the cells the map was computed on (:func:`map_grid`), given under the title with their size in mm
            (in voxels without ``spacing``): a reader sees how coarse the map is.

    A 2D image is shown radiologically (head up, the patient's left on the right); a 3D input as axial, coronal and
    sagittal planes through the map's maximum, marked ``+`` in each (planes through a finding may show none of it:
    the mark says where the map peaks, not where the finding is). A map with no single peak (all zero, or at its
    maximum across a whole axis: flat in-plane, as a map one cell across is) gets no ``+``: its title says why,
    and so does the log, once per output folder.

    Raises:
        ValueError: image and map differ in shape, or ``spacing`` is not one positive length per axis.
    """
    from matplotlib.figure import Figure

    from unimiss_monai.conventions import display_2d, display_panels, panel_points
    from unimiss_monai.data.writers import save_bytes
    from unimiss_monai.visualize.plots import figure_png

    img, sal = (np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float32) for t in (image, cam))
    if img.shape != sal.shape or img.ndim not in (2, 3):
        raise ValueError(f"saliency_png: image {img.shape} and map {sal.shape} must be the same 2D or 3D shape")
    if spacing is not None:
        spacing = tuple(float(v) for v in np.ravel(spacing))
        if len(spacing) != img.ndim or not all(math.isfinite(v) and v > 0 for v in spacing):
            raise ValueError(f"saliency_png: spacing must be {img.ndim} positive mm (one per axis of the {img.shape} "
                             f"image), got {spacing}; pass None for square voxels")
    cells = _cells(img.shape, grid, spacing) if grid is not None else ""
    lines = [line for line in (title, cells) if line]
    flat = _no_single_peak(sal)
    if flat:
        lines.append(f"no single peak ({flat})" + (": no + marked" if img.ndim == 3 else ""))
        if first_time("saliency maps without a single peak", str(Path(path).resolve().parent)):
            logger.warning("%s: the saliency map has no single peak (%s)%s%s; other maps of this run in %s may be "
                           "alike (said once)", path, flat, ", so no + marks one" if img.ndim == 3 else "",
                           f"; {cells}" if cells else "", Path(path).parent)
    if img.ndim == 2:
        aspect = 1.0 if spacing is None else spacing[1] / spacing[0]  # rows are Y, columns X
        pairs, marks = [("", display_2d(img), display_2d(sal), aspect)], [None]
    else:
        peak = np.unravel_index(int(np.argmax(sal)), sal.shape)
        if flat:  # the planes go through the middle of each axis along which the map has no peak
            top = sal >= sal.max() - _AT_PEAK
            peak = tuple(n // 2 if _spans(top, i) else int(p) for i, (n, p) in enumerate(zip(sal.shape, peak)))
        pairs = [(name, im, sm, aspect) for (name, im, aspect), (_, sm, _) in
                 zip(display_panels(img, peak, spacing), display_panels(sal, peak, spacing))]
        marks = [None] * 3 if flat else panel_points(sal.shape, peak)
    fig = Figure(figsize=(3.2 * len(pairs), 3.4))
    for i, (label, im, sm, aspect) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), i + 1)
        ax.imshow(im, cmap="gray", aspect=aspect)
        ax.imshow(sm, cmap="jet", alpha=0.35, vmin=0.0, vmax=1.0, aspect=aspect)
        if marks[i] is not None:  # the voxel all three planes go through
            ax.plot(marks[i][1], marks[i][0], marker="+", color="white", markersize=9, markeredgewidth=1.2)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    if lines:
        fig.suptitle("\n".join(lines), fontsize=9, y=1.0, va="bottom")  # lines added above, not over the panels
    save_bytes(figure_png(fig, dpi=100), path)
    return str(path)


def _cells(shape: Sequence[int], grid: Sequence[int], spacing: Sequence[float] | None) -> str:
    """``"map grid 4 x 1 x 1, cells 20 x 90 x 90 mm (Z x X x Y)"``: what one value of the map covers."""
    grid = [int(g) for g in grid]
    size = [n / g * (1.0 if spacing is None else s) for n, g, s in zip(shape, grid, spacing or [1.0] * len(shape))]
    axes = "Z x X x Y" if len(shape) == 3 else "X x Y"
    return (f"map grid {' x '.join(map(str, grid))}, cells {' x '.join(f'{v:.3g}' for v in size)} "
            f"{'mm' if spacing is not None else 'voxels' if len(shape) == 3 else 'pixels'} ({axes})")


def _spans(at_peak: np.ndarray, axis: int) -> bool:
    """Whether the voxels ``at_peak`` are whole lines along ``axis`` (a slab across it): there the map singles out no
    position along it. Tied peaks or a diagonal ridge reach every position of each axis without being such lines."""
    return bool(at_peak.any() and np.array_equal(at_peak.all(axis=axis), at_peak.any(axis=axis)))


def _no_single_peak(cam: np.ndarray) -> str:
    """Why the map has no single peak to mark (``"all zero: ..."``, ``"flat in-plane"``, ...), or ``""`` when it has
    one. A map whose maximum reaches across a whole axis has none there: a mark would land on its first voxel (the
    corner of a map flat in-plane), a place the map does not single out."""
    if not float(cam.max()) > 0:  # the maps are in [0, 1]
        return "all zero: no positive evidence for the class"
    at_peak = cam >= cam.max() - _AT_PEAK
    if at_peak.all():
        return "flat: one value everywhere"
    spans = [i for i in range(cam.ndim) if _spans(at_peak, i)]
    if cam.ndim == 3 and spans == [1, 2]:
        return "flat in-plane"
    names = "ZXY" if cam.ndim == 3 else "XY"
    return f"its maximum spans the whole {' and '.join(names[i] for i in spans)} axis" if spans else ""
