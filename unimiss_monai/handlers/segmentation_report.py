"""Per-structure segmentation report of an evaluation run: Dice, HD95 and surface Dice per case and structure as JSON +
CSV, and a PNG grid of image | truth | prediction overlays (metrics: :mod:`unimiss_monai.metrics.segmentation`).
A case that could not be loaded or run is listed as failed with its reason, the others are scored."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unimiss_monai.conventions import voxel_spacing
from unimiss_monai.data.case_names import datalist_order, datalist_place, names_apart, numbered_repeats
from unimiss_monai.data.datalists import SHARED_KEY, shared_counts
from unimiss_monai.data.image_formats import has_pixel_grid, split_image_name
from unimiss_monai.data.output_ledger import check_own_file, replacing_own
from unimiss_monai.data.tolerant import batch_items, failure_of, split_failed
from unimiss_monai.data.writers import save_bytes
from unimiss_monai.handlers.forward_failure_guard import guard_forward
from unimiss_monai.handlers.inference_summary import raise_if_failed
from unimiss_monai.metrics.segmentation import METRICS, compute_segmentation_metrics
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.dist import coordination_group, gather_objects, rank_and_world
from unimiss_monai.utils.hashing import SCORED_MODEL_KEY, model_checksum
from unimiss_monai.visualize.overlay import as_masks, representative_slice, save_overlay_grid

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["SegmentationReport", "write_segmentation_report"]

logger = logging.getLogger(__name__)


def _clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def write_segmentation_report(
    cases: Sequence[dict[str, Any]], structure_names: Sequence[str], output_dir: str | os.PathLike, prefix: str = "segmentation_report",
    surface_metrics: bool = True, failed: Sequence[dict[str, str]] = (), model_sha256: str | None = None,
    split: str | None = None, shared_with: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """Write ``<prefix>.json`` (per case and mean per structure) and ``<prefix>.csv`` (one row per case x structure).

    Args:
        cases: ``[{"case": name, "dice": [...], "hd95": [...], "surface_dice": [...], "missed": [...],
            "false_positive": [...]}]``, lists aligned with ``structure_names`` (``missed`` and ``false_positive``,
            optional: the structure is in the truth and not the prediction, or the other way round) and
            ``distance_unit`` (``"mm"``, the default, or ``"pixel"`` for a label without a physical grid: a PNG).
        structure_names: names of the reported structures.
        output_dir: folder for the files (created).
        prefix: file name stem.
        surface_metrics: whether HD95 and surface Dice were computed; recorded in the JSON, so that their ``null``
            values are not read as absent structures.
        failed: ``[{"case": input path, "reason": one line}]`` of the cases that could not be scored; listed in the
            JSON (``num_failed``, ``failed``) and in the CSV (one row each, the reason in a ``failed`` column, which
            the CSV has only when some case failed).
        model_sha256: the checksum of the model file scored, recorded in the JSON when given
            (:func:`~unimiss_monai.utils.hashing.model_checksum`).
        split: the datalist split scored (``"test"``), recorded in the JSON when given, so that the report calls only
            test cases held out.
        shared_with: per split that fitted the model, how many images of the scored split it lists too, recorded when
            given.

    Returns:
        ``{"json": path, "csv": path}``. Means skip ``nan`` (structures absent from truth and prediction); ``null``
        when none is defined. Each structure's ``missed`` counts the cases whose prediction lacks it entirely, and
        ``false_positives`` those whose prediction holds it where the truth has none: their Dice and surface Dice are
        0, their HD95 undefined, so the HD95 mean is over the cases where both hold it. ``mean_dice`` is the mean over
        structures of their mean Dice, the one figure to quote. ``num_cases`` counts the cases scored; the failed ones
        enter no mean. ``distance_unit`` says what HD95 is in and what surface Dice's tolerance was: ``"mm"``,
        ``"pixel"``, or ``"mixed"``, when their means are left out (the CSV then says each case's unit).
    """
    out = Path(output_dir)
    units = sorted({c.get("distance_unit", "mm") for c in cases})
    unit = units[0] if len(units) == 1 else ("mixed" if units else "mm")
    mean: dict[str, dict[str, float | None]] = {}
    for i, name in enumerate(structure_names):
        mean[name] = {}
        for m in METRICS:
            if unit == "mixed" and m != "dice":  # no mean of millimetres and pixels
                mean[name][m], mean[name][f"{m}_n"] = None, 0
                continue
            vals = [c[m][i] for c in cases if c[m][i] is not None and math.isfinite(c[m][i])]
            mean[name][m] = _clean(float(np.mean(vals))) if vals else None
            mean[name][f"{m}_n"] = len(vals)
        mean[name]["missed"] = sum(bool(c.get("missed", [False] * (i + 1))[i]) for c in cases)
        mean[name]["false_positives"] = sum(bool(c.get("false_positive", [False] * (i + 1))[i]) for c in cases)
    dice = [mean[name]["dice"] for name in structure_names if mean[name]["dice"] is not None]
    report = {
        "structures": list(structure_names),
        "num_cases": len(cases),
        "surface_metrics": bool(surface_metrics),
        "distance_unit": unit,
        "mean_dice": _clean(float(np.mean(dice))) if dice else None,
        "mean": mean,
        "num_failed": len(failed),
        "failed": [{"case": f["case"], "reason": f["reason"]} for f in failed],
        **({SCORED_MODEL_KEY: model_sha256} if model_sha256 else {}),
        **({"split": str(split)} if split else {}),
        **({SHARED_KEY: {k: int(v) for k, v in shared_with.items()}} if shared_with is not None else {}),
        "cases": [{"case": c["case"], "distance_unit": c.get("distance_unit", "mm"),
                   **{m: dict(zip(structure_names, map(_clean, c[m]))) for m in METRICS},
                   "missed": [n for n, miss in zip(structure_names, c.get("missed", [])) if miss],
                   "false_positives": [n for n, fp in zip(structure_names, c.get("false_positive", [])) if fp]}
                  for c in cases],
    }
    buf = io.StringIO()
    writer = csv.writer(buf)
    # the "distance_unit" column only when a case is in pixels, the "failed" one only when a case failed: the file of
    # a run where all worked in mm stays as it was
    per_unit = unit != "mm"
    tail = [""] if failed else []
    writer.writerow(["case", "structure", *METRICS, *(["distance_unit"] if per_unit else []),
                     *(["failed"] if failed else [])])
    for c in cases:
        case_unit = [c.get("distance_unit", "mm")] if per_unit else []
        for i, name in enumerate(structure_names):
            writer.writerow([c["case"], name, *("" if _clean(c[m][i]) is None else _clean(c[m][i]) for m in METRICS),
                             *case_unit, *tail])
    for f in failed:  # no structure and no metric: the case was never scored
        writer.writerow([f["case"], "", *[""] * len(METRICS), *([""] if per_unit else []), f["reason"]])
    for name in structure_names:
        writer.writerow(["mean", name, *("" if mean[name][m] is None else mean[name][m] for m in METRICS),
                         *([unit] if per_unit else []), *tail])
    paths = {"json": out / f"{prefix}.json", "csv": out / f"{prefix}.csv"}
    for path in paths.values():  # a file of the user's of either name: neither is written
        check_own_file(path, out)
    for path, content in ((paths["json"], json.dumps(report, indent=2)), (paths["csv"], buf.getvalue())):
        with replacing_own(path, out):
            save_bytes(content, path)
    return {k: str(v) for k, v in paths.items()}


def _source(item: dict, keys: Sequence[str]) -> str | None:
    """The file the first of ``keys`` of ``item`` was read from, as its metadata records it."""
    for key in keys:
        meta = getattr(item.get(key), "meta", None) or item.get(f"{key}_meta_dict") or {}
        name = meta.get("filename_or_obj")
        if isinstance(name, (list, tuple)):
            name = name[0] if name else None
        if name:
            return str(name)
    return None


def _case_name(item: dict, keys: Sequence[str], index: int) -> str:
    source = _source(item, keys)
    return split_image_name(source)[0] if source else _numbered(index)


def _numbered(row: int) -> str:
    return f"case_{row:04d}"  # a case of no file name, by its row in the report


def _network_order(volumes: Sequence[torch.Tensor], affine: torch.Tensor | None) -> list[torch.Tensor]:
    """``(C, X, Y, Z)`` volumes on a file's grid -> ``(C, Z, X, Y)`` in :data:`~unimiss_monai.conventions.CT_AXCODES`,
    whose ``[:, z]`` are axial slices as :mod:`unimiss_monai.conventions` displays them. Without an affine the volumes
    are taken to be in that orientation already."""
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    from unimiss_monai.conventions import CT_AXCODES, CT_AXIS_LABELS, CT_TO_NETWORK

    out = []
    for v in volumes:
        # a plain tensor: the volume takes the affine passed, not one it may carry in its own metadata
        v = torch.as_tensor(v).detach().cpu().as_subclass(torch.Tensor)
        if affine is not None:
            v = Orientation(axcodes=CT_AXCODES, labels=CT_AXIS_LABELS)(MetaTensor(v, affine=torch.as_tensor(affine).cpu()))
        out.append(torch.as_tensor(v).permute(*CT_TO_NETWORK))
    return out


class SegmentationReport:
    """Ignite handler for an evaluator: per-structure Dice, HD95, surface Dice over the epoch, then JSON, CSV, PNG.

    Each iteration's decollated output items must hold ``pred`` and ``label`` (one-hot or label maps) and, for the
    overlay, ``image``, on the input's own grid as MONAI loads it: ``(C, X, Y)`` or ``(C, X, Y, Z)``. Spacing comes
    from the label's ``MetaTensor`` (its affine's column lengths: :func:`~unimiss_monai.conventions.voxel_spacing`); a
    volume's overlay is the axial slice with the most labelled voxels, reoriented to the package's display convention
    by the label's affine. Only numbers and one 2D slice per overlay case are kept, so memory stays flat over large
    evaluations. Under ``torch.distributed`` the cases of all ranks are gathered and rank 0 writes; the evaluation's
    sampler should then deal each entry to one rank, unshuffled, in turn (MONAI's ``DistributedSampler`` with
    ``even_divisible=False, shuffle=False``; the bundles' evaluate configs set no sampler). The shards are put back in
    datalist order as such a sampler deals it (:func:`~unimiss_monai.data.case_names.datalist_place`), so that the
    rows, the names of unnamed cases and of repeated entries (``ct``, ``ct_2``) and the cases of the overlay grid are
    those of one process whatever the number of ranks.

    A case flagged ``failed`` in its batch item (:class:`~unimiss_monai.data.TolerantDataset`; attaching installs
    :func:`~unimiss_monai.handlers.guard_forward` for a failed forward pass) is not scored but listed with its reason
    in the JSON and CSV; once they are written the run raises ``RuntimeError``
    (:func:`~unimiss_monai.handlers.inference_summary.raise_if_failed`), so the evaluation exits non-zero.

    Args:
        output_dir: folder for ``<prefix>.json``, ``<prefix>.csv`` and ``<prefix>.png``.
        structure_names: names of the foreground classes ``1..K`` (class 0 is background).
        tolerance: surface-Dice tolerance (mm when spacing is known). Defaults to 2.0.
        image_key, pred_key, label_key: item keys. Defaults to ``image``/``pred``/``label``.
        max_overlay_cases: rows of the PNG grid. Defaults to 6.
        prefix: file name stem. Defaults to ``"segmentation_report"``.
        output_transform: maps ``engine.state.output`` to the list of items. Defaults to identity.
        surface: also compute HD95 and surface Dice (``False``: Dice only, the distances are ``null``; for studies
            that read Dice alone, where the distances of many poorly trained models would cost most of the time).
            Accepts ``"true"``/``"false"`` from the command line.
        model: the model file the run loaded (the bundles' ``@ckpt_path``); its checksum, taken as the run starts, is
            recorded in the JSON, so that the report can tell whether the scores are those of the model a bundle
            folder now holds.
        split: the datalist split the run scores (the bundles' ``@eval_split``), recorded in the JSON.
        shared_with: per split that fitted the model, the images of that split it lists too
            (:func:`~unimiss_monai.data.datalists.shared_images`); their numbers are recorded in the JSON, so that the
            report does not call such a test split held out.
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
        surface: bool | str = True,
        model: str | os.PathLike | None = None,
        split: str | None = None,
        shared_with: Mapping[str, Sequence[str] | int] | None = None,
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
        self.surface = as_bool(surface, "surface")
        self.model, self._checksum, self.split = model, None, split
        self.shared_with = shared_counts(shared_with)
        self.cases: list[dict[str, Any]] = []
        self.views: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        self.failed: list[dict[str, str]] = []
        # per case: its image's file, whether its name was given (kept) or it has none (numbered); per view: its case
        self._sources: list[tuple[str | None, bool, bool]] = []
        self._view_cases: list[int] = []
        self._places: tuple[list[int], list[int]] = ([], [])  # datalist place of each scored and each failed case
        self._seen = 0  # cases of this rank so far, scored or failed
        self.paths: dict[str, str] = {}
        self._ended_with: tuple[int, int] = (0, 0)  # (failed, all) cases of the report written, on rank 0

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)
        engine.add_event_handler(Events.STARTED, self._check_files)
        engine.add_event_handler(Events.STARTED, guard_forward)
        engine.add_event_handler(Events.COMPLETED, self._raise_if_failed)

    def _check_files(self, engine: Engine | None = None) -> None:
        # before any case, on the rank that writes: a report file of the user's would stop the run only at its end
        if rank_and_world()[0] == 0:
            for suffix in (".json", ".csv", ".png"):
                check_own_file(self.output_dir / f"{self.prefix}{suffix}", self.output_dir)
            self._checksum = model_checksum(self.model)  # the model the bundle's initialize step has just loaded

    def reset(self, engine: Engine | None = None) -> None:
        self.cases, self.views, self.failed, self._sources, self._view_cases = [], [], [], [], []
        self._places, self._seen = ([], []), 0
        self._ended_with = (0, 0)

    def _masks(self, x: torch.Tensor) -> np.ndarray:
        """``(S, *spatial)`` structure masks of one-hot / multi-label channels (background dropped) or a label map:
        overlapping structures (the heart over the lungs of a radiograph) stay visible in the overlay."""
        x = torch.as_tensor(x).detach().cpu()
        if x.shape[0] == self.num_classes and self.num_classes > 1:
            return (x[1:] > 0.5).numpy()
        return as_masks(x[0].numpy(), self.num_classes - 1, x.ndim - 1)

    def add(self, item: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        """Score one case (``item`` with ``pred``/``label``/optional ``image``) and keep it for the report; a case of no
        file name is named by its row in the report (``case_0007``)."""
        pred, label = item[self.pred_key], item[self.label_key]
        affine = getattr(label, "affine", None)
        source = str((getattr(label, "meta", None) or {}).get("filename_or_obj") or "")
        # mm along each array axis, whatever way the image lies in space; a PNG's identity affine is no grid: pixels
        in_mm = affine is not None and has_pixel_grid(source)
        spacing = list(voxel_spacing(affine, label.ndim - 1)) if in_mm else None
        case = {"case": name or _case_name(item, (self.label_key, self.image_key), len(self.cases)),
                "distance_unit": "mm" if in_mm else "pixel"}
        case.update(compute_segmentation_metrics(pred, label, self.num_classes, spacing, self.tolerance,
                                                 surface=self.surface))
        self.cases.append(case)
        # grouped by their images alone: a root over image and label folders alike would lengthen every name
        numbered = name is None and _source(item, (self.label_key, self.image_key)) is None
        self._sources.append((_source(item, (self.image_key,)), name is not None, numbered))
        if len(self.views) < self.max_overlay_cases and self.image_key in item:
            self._view_cases.append(len(self.cases) - 1)
            image = item[self.image_key]
            if torch.as_tensor(image).ndim == 4:
                image, label, pred = _network_order((image, label, pred), getattr(label, "affine", None))
            image = torch.as_tensor(image).detach().cpu()[0].float().numpy()
            self.views.append((case["case"], *representative_slice(image, self._masks(label), self._masks(pred))))
        return case

    def update(self, engine: Engine) -> None:
        outputs, _, failed = split_failed(engine.state.output, engine.state.batch)
        self.failed.extend(failed)
        self._note_places(engine)
        if failed and not outputs:
            return
        items = self.output_transform(outputs if failed else engine.state.output)
        for item in items if isinstance(items, list) else [items]:
            self.add(item)

    def _note_places(self, engine: Engine) -> None:
        """Record the datalist place of each case of this iteration (paired with its output item as
        :func:`split_failed` pairs them), each scored and each failed one in its list."""
        outs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        items = batch_items(engine.state.batch)
        paired = len(items) == len(outs)
        worked: list[int] = []
        for k, out in enumerate(outs):
            place = datalist_place(self._seen + k, *rank_and_world())
            (self._places[1] if paired and failure_of(items[k], out) else worked).append(place)
        self._seen += len(outs)
        self._places[0].extend(worked)

    def write(self, engine: Engine | None = None) -> dict[str, str]:
        """Write JSON, CSV and PNG; returns their paths (empty on ranks other than 0)."""
        cases, views, failed = self.cases, self.views, self.failed
        # every rank's cases; rank 0 writes. Over the gloo coordination group: the views are CPU arrays (no trip through
        # CUDA for NCCL), and the ranks done first wait for the slowest one's evaluation without the default group's
        # 10 (NCCL) or 30 (gloo) minute limit
        shards = gather_objects([(cases, views, failed, self._sources, self._view_cases, self._places)],
                                coordination_group())
        if rank_and_world()[0] != 0:
            return {}
        cases = [dict(c) for shard in shards for c in shard[0]]
        # the cases in datalist order, whatever the number of ranks: the repeat of an entry is the one numbered, and
        # the overlay grid shows the first cases of the datalist
        order = datalist_order([shard[5][0] for shard in shards], len(cases))
        at = {joined: k for k, joined in enumerate(order)}  # a case's place in the join -> its row
        offsets = np.cumsum([0] + [len(shard[0]) for shard in shards])
        views = sorted(((at[offset + k], view) for shard, offset in zip(shards, offsets)
                        for view, k in zip(shard[1], shard[4])), key=lambda v: v[0])[: self.max_overlay_cases]
        cases = [cases[i] for i in order]
        failed = [f for shard in shards for f in shard[2]]
        failed = [failed[i] for i in datalist_order([shard[5][1] for shard in shards], len(failed))]
        # cases named alike by their files (TotalSegmentator's s0001/ct.nii.gz, s0002/ct.nii.gz) by their image's path
        # below the folder those share, as inference names them (s0001_ct): a report of rows all named "ct" pairs no
        # row with its case
        sources = [src for shard in shards for src in shard[3]]
        sources = [sources[i] for i in order]
        for row in [row for row, (*_, numbered) in enumerate(sources) if numbered]:  # by its row, as one process
            cases[row]["case"] = _numbered(row)  # numbers it: a rank's own count depends on the number of ranks
        paths = [src or c["case"] for c, (src, *_) in zip(cases, sources)]
        kept = [given or not src for src, given, _ in sources]
        for case, name in zip(cases, names_apart(paths, [c["case"] for c in cases], kept)):
            case["case"] = name
        counts = Counter(c["case"].casefold() for c in cases)
        shared = sorted({c["case"] for c in cases if counts[c["case"].casefold()] > 1})
        if shared:  # two labels of one image (two raters), or files named alike: each row keeps a name of its own
            for case, name in zip(cases, numbered_repeats([c["case"] for c in cases])):
                case["case"] = name
            logger.warning("segmentation report: %s name(s) stood for more than one case (%s), numbered in datalist "
                           "order (%s_2, ...): give those files names of their own to tell them by name", len(shared),
                           ", ".join(shared[:5]), shared[0])
        views = [(cases[row]["case"], *view[1:]) for row, view in views]
        self.paths = write_segmentation_report(cases, self.structure_names, self.output_dir, self.prefix, self.surface,
                                               failed, self._checksum, self.split, self.shared_with)
        if views:
            with replacing_own(self.output_dir / f"{self.prefix}.png", self.output_dir):
                self.paths["png"] = save_overlay_grid(views, self.structure_names, self.output_dir / f"{self.prefix}.png")
        mean_dice = json.loads(Path(self.paths["json"]).read_text())["mean_dice"]  # the figure the report states
        logger.info("segmentation report: %d cases, mean Dice %s -> %s", len(cases),
                    "-" if mean_dice is None else f"{mean_dice:.4f}", ", ".join(self.paths.values()))
        for f in failed:
            logger.warning("segmentation report: FAILED %s: %s", f["case"], f["reason"])
        self._ended_with = (len(failed), len(failed) + len(cases))
        return self.paths

    def _raise_if_failed(self, engine: Engine | None = None) -> None:
        # at the end of the run, after every handler's end-of-epoch step: the report is written first
        raise_if_failed("evaluation", *self._ended_with, self.paths.get("json", self.output_dir), "scored")
