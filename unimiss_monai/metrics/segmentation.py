"""Per-structure segmentation metrics of one case: Dice, HD95 and surface Dice (MONAI metrics).

Works for 2D (X-ray) and 3D (CT) alike: arrays are channel-first ``(C, *spatial)``; distances are in the units of the
given spacing (millimetres from an affine's column lengths: :func:`~unimiss_monai.conventions.voxel_spacing`), in
voxels without one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from monai.networks.utils import one_hot

__all__ = ["METRICS", "compute_segmentation_metrics"]

METRICS = ("dice", "hd95", "surface_dice")


def _as_onehot(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.shape[0] == num_classes and num_classes > 1:
        return (x > 0.5).float()
    if x.shape[0] != 1:
        raise ValueError(f"segmentation report: expected {num_classes} one-hot channels or 1 label-map channel, got shape {tuple(x.shape)}")
    values = x[None].round().long()
    if values.numel() and (int(values.min()) < 0 or int(values.max()) >= num_classes):
        found = sorted({int(v) for v in values.unique() if not 0 <= int(v) < num_classes})
        raise ValueError(f"segmentation report: label map values {found[:8]} lie outside 0..{num_classes - 1} (background and "
                         f"{num_classes - 1} structures); check the label's values against the bundle's structures")
    return one_hot(values, num_classes, dim=1)[0]


def compute_segmentation_metrics(
    pred: torch.Tensor,
    label: torch.Tensor,
    num_classes: int,
    spacing: Sequence[float] | None = None,
    tolerance: float = 2.0,
    include_background: bool = False,
    surface: bool = True,
) -> dict[str, list[float]]:
    """Dice, 95th-percentile Hausdorff distance and surface Dice at ``tolerance`` for one case.

    Args:
        pred: prediction, one-hot ``(num_classes, *spatial)`` or label map ``(1, *spatial)``.
        label: ground truth, same forms as ``pred`` and the same spatial shape.
        num_classes: number of classes including background.
        spacing: voxel size per spatial axis (mm); ``None`` measures distances in voxels.
        tolerance: surface-Dice tolerance, in the units of ``spacing``. Defaults to 2.0.
        include_background: also report class 0.
        surface: compute the two surface distances. A distance transform per structure costs far more than Dice,
            most of all for the scattered masks of an early model; ``False`` leaves them ``nan`` (Dice only).

    Returns:
        ``{"dice": [...], "hd95": [...], "surface_dice": [...], "missed": [...], "false_positive": [...]}``, one value
        per reported class. A structure absent from both the ground truth and the prediction is not scored (every
        metric ``nan``: nothing to find, nothing found). A structure of the ground truth that the prediction misses
        entirely (``missed``), or one the prediction holds and the ground truth lacks (``false_positive``), scores
        Dice 0 and surface Dice 0: counting neither would let a model that hallucinates organs score as one that does
        not. HD95 is undefined (``nan``) for both, so report the counts beside the HD95 mean, which would otherwise
        hide them. These follow MONAI where one mask is empty: ``compute_dice`` without ``ignore_empty`` gives 0,
        ``compute_surface_dice`` 0, and ``compute_hausdorff_distance`` warns and gives ``nan`` or ``inf`` by release
        (``nan`` here in either case). The distances are ``nan`` when ``surface`` is ``False``.
    """
    p, y = _as_onehot(pred, num_classes), _as_onehot(label, num_classes)
    if p.shape != y.shape:
        raise ValueError(f"segmentation report: prediction {tuple(p.shape)} and label {tuple(y.shape)} disagree in shape")
    p, y = p[None].cpu(), y[None].cpu()
    n_reported = num_classes - (0 if include_background else 1)
    sp = None if spacing is None else [float(s) for s in spacing]
    dice = compute_dice(p, y, include_background=include_background, ignore_empty=True)[0]
    first = 0 if include_background else 1
    in_pred, in_truth = (p.flatten(2).sum(-1) > 0)[0, first:], (y.flatten(2).sum(-1) > 0)[0, first:]
    missed, false_positive = in_truth & ~in_pred, in_pred & ~in_truth
    # MONAI's ignore_empty leaves nan where the truth is empty, whatever was predicted there: a false positive is 0
    dice = torch.where(false_positive, 0.0, dice)
    hd95 = torch.full((n_reported,), float("nan"))
    nsd = torch.full((n_reported,), float("nan"))
    if surface and (in_truth & in_pred).any():
        # distances are undefined when either mask is empty; MONAI warns and returns inf/nan there, so skip those
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd95 = compute_hausdorff_distance(p, y, include_background=include_background, percentile=95, spacing=sp)[0]
            nsd = compute_surface_dice(p, y, [tolerance] * n_reported, include_background=include_background, spacing=sp)[0]
        hd95 = torch.where(in_truth & in_pred, hd95, torch.nan)
    if surface:
        # a missed or a falsely predicted structure has no surface within the tolerance: 0, as Dice; absent from both:
        # not scored
        nsd = torch.where(in_truth & in_pred, nsd, torch.where(missed | false_positive, 0.0, torch.nan))
    return {"dice": dice.tolist(), "hd95": hd95.tolist(), "surface_dice": nsd.tolist(), "missed": missed.tolist(),
            "false_positive": false_positive.tolist()}
