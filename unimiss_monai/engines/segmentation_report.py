"""Per-structure segmentation report: Dice, HD95 and surface Dice (MONAI metrics) as JSON + CSV, and a PNG overlay grid.

Works for 2D (X-ray) and 3D (CT) alike: arrays are channel-first ``(C, *spatial)``; distances are in millimetres when
the label carries its voxel spacing (a MONAI ``MetaTensor``), in voxels otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from monai.networks.utils import one_hot

from unimiss_monai.data.writers import save_bytes

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "METRICS",
    "SegmentationReport",
    "compute_segmentation_metrics",
    "save_overlay_grid",
    "write_segmentation_report",
]

logger = logging.getLogger(__name__)
METRICS = ("dice", "hd95", "surface_dice")


def _as_onehot(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.shape[0] == num_classes and num_classes > 1:
        return (x > 0.5).float()
    if x.shape[0] != 1:
        raise ValueError(f"segmentation report: expected {num_classes} one-hot channels or 1 label-map channel, got shape {tuple(x.shape)}")
    return one_hot(x[None].round().long(), num_classes, dim=1)[0]


def compute_segmentation_metrics(
    pred: torch.Tensor,
    label: torch.Tensor,
    num_classes: int,
    spacing: Sequence[float] | None = None,
    tolerance: float = 2.0,
    include_background: bool = False,
) -> dict[str, list[float]]:
    """Dice, 95th-percentile Hausdorff distance and surface Dice at ``tolerance`` for one case.

    Args:
        pred: prediction, one-hot ``(num_classes, *spatial)`` or label map ``(1, *spatial)``.
        label: ground truth, same forms as ``pred`` and the same spatial shape.
        num_classes: number of classes including background.
        spacing: voxel size per spatial axis (mm); ``None`` measures distances in voxels.
        tolerance: surface-Dice tolerance, in the units of ``spacing``. Defaults to 2.0.
        include_background: also report class 0.

    Returns:
        ``{"dice": [...], "hd95": [...], "surface_dice": [...]}``, one value per reported class; ``nan`` where the
        structure is absent from the ground truth (Dice) or from either mask (distances).
    """
    p, y = _as_onehot(pred, num_classes), _as_onehot(label, num_classes)
    if p.shape != y.shape:
        raise ValueError(f"segmentation report: prediction {tuple(p.shape)} and label {tuple(y.shape)} disagree in shape")
    p, y = p[None].cpu(), y[None].cpu()
    n_reported = num_classes - (0 if include_background else 1)
    sp = None if spacing is None else [float(s) for s in spacing]
    dice = compute_dice(p, y, include_background=include_background, ignore_empty=True)[0]
    present = (p.flatten(2).sum(-1) > 0)[0] & (y.flatten(2).sum(-1) > 0)[0]
    present = present if include_background else present[1:]
    hd95 = torch.full((n_reported,), float("nan"))
    nsd = torch.full((n_reported,), float("nan"))
    if present.any():
        # distances are undefined when either mask is empty; MONAI warns and returns inf/nan there, so skip those
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd95 = compute_hausdorff_distance(p, y, include_background=include_background, percentile=95, spacing=sp)[0]
            nsd = compute_surface_dice(p, y, [tolerance] * n_reported, include_background=include_background, spacing=sp)[0]
        hd95 = torch.where(present, hd95, torch.nan)
        nsd = torch.where(present, nsd, torch.nan)
    return {"dice": dice.tolist(), "hd95": hd95.tolist(), "surface_dice": nsd.tolist()}


def _clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def write_segmentation_report(
    cases: Sequence[dict[str, Any]], structure_names: Sequence[str], output_dir: str | os.PathLike, prefix: str = "segmentation_report"
) -> dict[str, str]:
    """Write ``<prefix>.json`` (per case and mean per structure) and ``<prefix>.csv`` (one row per case x structure).

    Args:
        cases: ``[{"case": name, "dice": [...], "hd95": [...], "surface_dice": [...]}]``, lists aligned with
            ``structure_names``.
        structure_names: names of the reported structures.
        output_dir: folder for the files (created).
        prefix: file name stem.

    Returns:
        ``{"json": path, "csv": path}``. Means skip ``nan`` (absent structures); ``null`` when none is defined.
    """
    out = Path(output_dir)
    mean: dict[str, dict[str, float | None]] = {}
    for i, name in enumerate(structure_names):
        mean[name] = {}
        for m in METRICS:
            vals = [c[m][i] for c in cases if c[m][i] is not None and math.isfinite(c[m][i])]
            mean[name][m] = _clean(float(np.mean(vals))) if vals else None
            mean[name][f"{m}_n"] = len(vals)
    report = {
        "structures": list(structure_names),
        "num_cases": len(cases),
        "mean": mean,
        "cases": [{"case": c["case"], **{m: dict(zip(structure_names, map(_clean, c[m]))) for m in METRICS}} for c in cases],
    }
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["case", "structure", *METRICS])
    for c in cases:
        for i, name in enumerate(structure_names):
            writer.writerow([c["case"], name, *("" if _clean(c[m][i]) is None else _clean(c[m][i]) for m in METRICS)])
    for name in structure_names:
        writer.writerow(["mean", name, *("" if mean[name][m] is None else mean[name][m] for m in METRICS)])
    paths = {"json": out / f"{prefix}.json", "csv": out / f"{prefix}.csv"}
    save_bytes(json.dumps(report, indent=2), paths["json"])
    save_bytes(buf.getvalue(), paths["csv"])
    return {k: str(v) for k, v in paths.items()}


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from unimiss_monai.conventions import display_2d

    colors = plt.get_cmap("tab20" if len(structure_names) > 10 else "tab10").colors
    cmap = ListedColormap([(0, 0, 0, 0)] + [(*colors[i % len(colors)][:3], 0.55) for i in range(len(structure_names))])
    rows = max(1, len(views))
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows + 0.6), squeeze=False)
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    save_bytes(buf.getvalue(), Path(path))
    return str(path)


def _case_name(item: dict, keys: Sequence[str], index: int) -> str:
    for key in keys:
        meta = getattr(item.get(key), "meta", None) or item.get(f"{key}_meta_dict") or {}
        name = meta.get("filename_or_obj")
        if isinstance(name, (list, tuple)):
            name = name[0] if name else None
        if name:
            base = os.path.basename(str(name).rstrip("/"))
            return base[: -len(".nii.gz")] if base.endswith(".nii.gz") else os.path.splitext(base)[0]
    return f"case_{index:04d}"


class SegmentationReport:
    """Ignite handler for an evaluator: per-structure Dice, HD95, surface Dice over the epoch, then JSON, CSV, PNG.

    Each iteration's decollated output items must hold ``pred`` and ``label`` (one-hot or label maps) and, for the
    overlay, ``image``; spacing comes from the label's ``MetaTensor`` (``pixdim``). Only numbers and one 2D slice per
    overlay case are kept, so memory stays flat over large evaluations. Under ``torch.distributed`` the cases of all
    ranks are gathered and rank 0 writes.

    Args:
        output_dir: folder for ``<prefix>.json``, ``<prefix>.csv`` and ``<prefix>.png``.
        structure_names: names of the foreground classes ``1..K`` (class 0 is background).
        tolerance: surface-Dice tolerance (mm when spacing is known). Defaults to 2.0.
        image_key, pred_key, label_key: item keys. Defaults to ``image``/``pred``/``label``.
        max_overlay_cases: rows of the PNG grid. Defaults to 6.
        prefix: file name stem. Defaults to ``"segmentation_report"``.
        output_transform: maps ``engine.state.output`` to the list of items. Defaults to identity.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        structure_names: Sequence[str],
        tolerance: float = 2.0,
        image_key: str = "image",
        pred_key: str = "pred",
        label_key: str = "label",
        max_overlay_cases: int = 6,
        prefix: str = "segmentation_report",
        output_transform: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        if not structure_names:
            raise ValueError("SegmentationReport: structure_names is empty; pass the names of the foreground classes")
        self.output_dir = Path(output_dir)
        self.structure_names = list(structure_names)
        self.num_classes = len(self.structure_names) + 1
        self.tolerance = float(tolerance)
        self.image_key, self.pred_key, self.label_key = image_key, pred_key, label_key
        self.max_overlay_cases = int(max_overlay_cases)
        self.prefix = prefix
        self.output_transform = output_transform
        self.cases: list[dict[str, Any]] = []
        self.views: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        self.paths: dict[str, str] = {}

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.cases, self.views = [], []

    def _label_map(self, x: torch.Tensor) -> np.ndarray:
        x = torch.as_tensor(x).detach().cpu()
        return (x.argmax(0) if x.shape[0] > 1 else x[0]).numpy().astype(np.int16)

    def add(self, item: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        """Score one case (``item`` with ``pred``/``label``/optional ``image``) and keep it for the report."""
        pred, label = item[self.pred_key], item[self.label_key]
        pixdim = getattr(label, "pixdim", None)
        spacing = None if pixdim is None else [float(s) for s in torch.as_tensor(pixdim).flatten()[: label.ndim - 1]]
        case = {"case": name or _case_name(item, (self.label_key, self.image_key), len(self.cases))}
        case.update(compute_segmentation_metrics(pred, label, self.num_classes, spacing, self.tolerance))
        self.cases.append(case)
        if len(self.views) < self.max_overlay_cases and self.image_key in item:
            image = torch.as_tensor(item[self.image_key]).detach().cpu()[0].float().numpy()
            self.views.append((case["case"], *representative_slice(image, self._label_map(label), self._label_map(pred))))
        return case

    def update(self, engine: Engine) -> None:
        items = self.output_transform(engine.state.output)
        for item in items if isinstance(items, list) else [items]:
            self.add(item)

    def write(self, engine: Engine | None = None) -> dict[str, str]:
        """Write JSON, CSV and PNG; returns their paths (empty on ranks other than 0)."""
        cases, views = self.cases, self.views
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (cases, views))
            if torch.distributed.get_rank() != 0:
                return {}
            cases = [c for part in gathered for c in part[0]]
            views = [v for part in gathered for v in part[1]][: self.max_overlay_cases]
        self.paths = write_segmentation_report(cases, self.structure_names, self.output_dir, self.prefix)
        if views:
            self.paths["png"] = save_overlay_grid(views, self.structure_names, self.output_dir / f"{self.prefix}.png")
        dice = [c["dice"] for c in cases]
        mean_dice = float(np.nanmean(dice)) if dice and np.isfinite(dice).any() else float("nan")
        logger.info("segmentation report: %d cases, mean Dice %.4f -> %s", len(cases), mean_dice, self.paths["json"])
        print(f"[report] {len(cases)} cases, mean Dice {mean_dice:.4f}: {', '.join(self.paths.values())}", flush=True)
        return self.paths
