"""Classification report of an evaluation run: ``metrics.json``, ``per_class.csv``, ``evaluation_predictions.csv``,
``roc.png`` and ``confusion_matrix.png``, each written atomically (metrics: :mod:`unimiss_monai.metrics.classification`).
A case that could not be loaded or run is listed in ``metrics.json`` as failed with its reason, the others are scored."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from unimiss_monai.data.case_names import datalist_order, datalist_place, numbered_repeats
from unimiss_monai.data.datalists import SHARED_KEY, shared_counts
from unimiss_monai.data.output_ledger import check_own_file, replacing_own
from unimiss_monai.data.tolerant import batch_items, failure_of, split_failed
from unimiss_monai.data.writers import save_bytes
from unimiss_monai.handlers.forward_failure_guard import guard_forward
from unimiss_monai.handlers.inference_summary import raise_if_failed
from unimiss_monai.metrics.classification import as_numpy, classification_metrics, stack_pairs, to_indicator
from unimiss_monai.utils.dist import coordination_group, gather_objects, rank_and_world
from unimiss_monai.utils.hashing import PREDICTIONS_KEY, SCORED_MODEL_KEY, model_checksum
from unimiss_monai.visualize.plots import confusion_png, roc_png

logger = logging.getLogger(__name__)

__all__ = ["EVALUATION_PREDICTIONS", "REPORT_FILES", "ClassificationReport", "write_report"]

#: the per-case file of an evaluation (probabilities and truth)
EVALUATION_PREDICTIONS = "evaluation_predictions.csv"
#: the files :func:`write_report` writes into its folder
REPORT_FILES = ("metrics.json", "per_class.csv", EVALUATION_PREDICTIONS, "roc.png", "confusion_matrix.png")


def write_report(
    output_dir: str | os.PathLike, probs, labels, class_names: Sequence[str], multi_label: bool = False,
    threshold: float = 0.5, names: Sequence[str] | None = None, failed: Sequence[dict[str, str]] = (),
    model_sha256: str | None = None, split: str | None = None, shared_with: Mapping[str, int] | None = None,
) -> dict:
    """Compute :func:`classification_metrics` and write them to ``output_dir``.

    Files: ``metrics.json`` (everything), ``per_class.csv`` (one row per class), ``evaluation_predictions.csv`` (one
    row per case with its truth, when ``names`` are given, and one per failed case with its reason in a ``failed``
    column, which the file has only when some case failed; named apart from inference's ``predictions.csv``, which
    the bundles write to the same ``output_dir``), ``roc.png``, ``confusion_matrix.png``. Arguments as in
    :func:`classification_metrics`; ``names``: (N,) case identifiers; ``failed``: ``[{"case": input path, "reason": one
    line}]`` of the cases that could not be scored, listed in ``metrics.json`` (``num_failed``, ``failed``; its
    ``num_cases`` counts the cases scored); ``model_sha256``: the checksum of the model file scored, recorded in
    ``metrics.json`` when given (:func:`~unimiss_monai.utils.hashing.model_checksum`); ``split``: the datalist split
    scored (``"test"``), recorded as ``split`` when given, so that the report calls only test cases held out;
    ``shared_with``: per split that fitted the model, how many of its images that split lists too, recorded when given;
    with
    ``names``, ``metrics.json`` records the SHA-256 of the prediction file it was written with
    (:data:`~unimiss_monai.utils.hashing.PREDICTIONS_KEY`), which pairs the two. Returns the metrics dict. A file of
    one of these names that this package did not write there stops it before any is written
    (:mod:`~unimiss_monai.data.output_ledger`).
    """
    out = Path(output_dir)
    for name in REPORT_FILES:
        check_own_file(out / name, out)
    probs_np = as_numpy(probs)
    metrics = classification_metrics(probs_np, labels, class_names, multi_label, threshold)
    truth = to_indicator(as_numpy(labels), len(class_names), multi_label)
    metrics["num_failed"] = len(failed)
    metrics["failed"] = [{"case": f["case"], "reason": f["reason"]} for f in failed]
    if model_sha256:
        metrics[SCORED_MODEL_KEY] = model_sha256
    if split:
        metrics["split"] = str(split)
    if shared_with is not None:
        metrics[SHARED_KEY] = {k: int(v) for k, v in shared_with.items()}
    predictions = None
    if names is not None:
        # the "failed" column only when a case failed: the file of a run where all worked stays as it was
        tail = [""] if failed else []
        rows = [[n, *[f"{v:.6f}" for v in p], *t.tolist(), *tail] for n, p, t in zip(names, probs_np, truth)]
        blank = [""] * (2 * len(class_names))  # no probability and no truth: the case was never read or run
        rows += [[f["case"], *blank, f["reason"]] for f in failed]
        header = ["name", *[f"prob_{c}" for c in class_names], *[f"true_{c}" for c in class_names],
                  *(["failed"] if failed else [])]
        predictions = _csv_bytes(header, rows)
        # which prediction file these scores are of: the report pairs the two by it, whatever the file times say
        metrics[PREDICTIONS_KEY] = hashlib.sha256(predictions).hexdigest()
    files = {"metrics.json": json.dumps(metrics, indent=2).encode()}
    keys = ["class", "positives", "negatives", "auc", "ap", "sensitivity", "specificity", "tp", "fn", "fp", "tn"]
    files["per_class.csv"] = _csv_bytes(keys, [[p[k] for k in keys] for p in metrics["per_class"]])
    if predictions is not None:
        files[EVALUATION_PREDICTIONS] = predictions
    files["roc.png"] = roc_png(probs_np, truth, metrics)
    files["confusion_matrix.png"] = confusion_png(metrics, class_names)
    for name, content in files.items():  # each recorded as it is written: a run stopped part-way leaves no file
        with replacing_own(out / name, out):  # of its own looking edited
            save_bytes(content, out / name)
    for note in metrics["notes"]:
        logger.warning("classification report: %s", note)
    return metrics


def _csv_bytes(header: Sequence[str], rows: Sequence[Sequence]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue().encode()


class ClassificationReport:
    """Ignite handler: gather predictions over an evaluation run, then :func:`write_report` at its end.

    Args:
        output_dir: folder of the report files.
        class_names: names of the C output channels.
        multi_label: as in :func:`classification_metrics`. threshold: multi-label operating point.
        output_transform: ``engine.state.output`` -> ``(preds, labels)``, as lists of per-case tensors or batch-first
            tensors. Defaults to ``monai.handlers.from_engine(["pred", "label"])``.
        name_transform: ``engine.state.batch`` -> list of case names (defaults to the image file names); a name
            another case of the run has is numbered (:func:`~unimiss_monai.data.case_names.numbered_repeats`).
        model: the model file the run loaded (the bundles' ``@ckpt_path``); its checksum, taken as the run starts, is
            recorded in ``metrics.json``, so that the report can tell whether the scores are those of the model a
            bundle folder now holds.
        split: the datalist split the run scores (the bundles' ``@eval_split``), recorded in ``metrics.json``.
        shared_with: per split that fitted the model, the images of that split it lists too
            (:func:`~unimiss_monai.data.datalists.shared_images`); their numbers are recorded in ``metrics.json``, so
            that the report does not call such a test split held out.

    Under ``torch.distributed`` every rank gathers its shard and rank 0 writes the report over all of them; the
    evaluation's sampler should then deal each entry to one rank, unshuffled, in turn (MONAI's ``DistributedSampler``
    with ``even_divisible=False, shuffle=False``; the bundles' evaluate configs set no sampler), as a padding sampler
    would count the repeated cases twice. The shards are put back in datalist order as such a sampler deals it (item
    ``i`` of rank ``r`` of ``W`` is entry ``i * W + r``), so that the rows, the names of cases of no name (``case_3``,
    by their row) and of repeated entries (``a.png``, ``a.png_2``) are those of one process whatever the number of
    ranks.

    A case flagged ``failed`` in its batch item (:class:`~unimiss_monai.data.TolerantDataset`; attaching installs
    :func:`~unimiss_monai.handlers.guard_forward` for a failed forward pass) is not scored but listed with its reason
    in ``metrics.json``; once the report is written the run raises ``RuntimeError``
    (:func:`~unimiss_monai.handlers.inference_summary.raise_if_failed`), so the evaluation exits non-zero.
    """

    def __init__(
        self, output_dir: str | os.PathLike, class_names: Sequence[str], multi_label: bool = False,
        threshold: float = 0.5, output_transform: Callable | None = None, name_transform: Callable | None = None,
        model: str | os.PathLike | None = None, split: str | None = None,
        shared_with: Mapping[str, Sequence[str] | int] | None = None,
    ) -> None:
        from monai.handlers import from_engine

        self.output_dir, self.class_names = Path(output_dir), list(class_names)
        self.multi_label, self.threshold = multi_label, threshold
        self.output_transform = output_transform or from_engine(["pred", "label"])
        self.name_transform = name_transform or _image_names
        self.model, self._checksum, self.split = model, None, split
        self.shared_with = shared_counts(shared_with)
        self.metrics: dict | None = None
        self._preds: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._names: list[str | None] = []  # None: a case of no name, numbered when the report is written
        self._failed: list[dict[str, str]] = []
        self._places: tuple[list[int], list[int]] = ([], [])  # datalist place of each scored and each failed case
        self._seen = 0  # cases of this rank so far, scored or failed
        self._ended_with: tuple[int, int] = (0, 0)  # (failed, all) cases of the report written, on rank 0
        self._listed_in = "the log above"  # metrics.json once written

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)
        engine.add_event_handler(Events.STARTED, self._check_files)
        engine.add_event_handler(Events.STARTED, guard_forward)
        engine.add_event_handler(Events.COMPLETED, self._raise_if_failed)

    def _check_files(self, engine) -> None:
        # before any case, on the rank that writes: a metrics.json of the user's would stop the run only at its end
        if rank_and_world()[0] == 0:
            for name in REPORT_FILES:
                check_own_file(self.output_dir / name, self.output_dir)
            self._checksum = model_checksum(self.model)  # the model the bundle's initialize step has just loaded

    def _reset(self, engine) -> None:
        self._preds, self._labels, self._names, self._failed = [], [], [], []
        self._places, self._seen = ([], []), 0
        self._ended_with, self._listed_in = (0, 0), "the log above"

    def _collect(self, engine) -> None:
        output, batch, failed = split_failed(engine.state.output, engine.state.batch)
        self._failed.extend(failed)
        self._note_places(engine, bool(failed))
        if failed and not output:
            return
        output, batch = (output, batch) if failed else (engine.state.output, engine.state.batch)
        pred, lab = stack_pairs(*self.output_transform(output))
        self._preds.append(pred.detach().cpu())
        self._labels.append(lab.detach().cpu())
        names = self.name_transform(batch)
        if not names or len(names) != len(pred):  # numbered by their rows once the shards are gathered and in order
            names = [None] * len(pred)
        self._names.extend(names)
        if not failed:  # a batch of cases that all worked: as many as its predictions (a collated batch is one item)
            self._places[0].extend(datalist_place(self._seen + i, *rank_and_world()) for i in range(len(pred)))
            self._seen += len(pred)

    def _note_places(self, engine, failed: bool) -> None:
        """Record the datalist place of each case of a batch with a failed case (then its items pair with its
        outputs, :func:`split_failed`), each scored and each failed one in its list."""
        if not failed:
            return
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item, out in zip(batch_items(engine.state.batch), outputs):
            self._places[bool(failure_of(item, out))].append(datalist_place(self._seen, *rank_and_world()))
            self._seen += 1

    def _write(self, engine) -> None:
        # each rank saw its own shard of the cases: rank 0 reports on all of them, the others write nothing. Over the
        # gloo coordination group: the shards are CPU tensors (no trip through CUDA for NCCL), and the ranks done first
        # wait for the slowest one's evaluation without the default group's 10 (NCCL) or 30 (gloo) minute limit
        shards = gather_objects([(self._preds, self._labels, self._names, self._failed, self._places)],
                                coordination_group())
        if rank_and_world()[0] != 0:
            return
        preds = [p for shard in shards for p in shard[0]]
        labels = [lab for shard in shards for lab in shard[1]]
        # the cases in datalist order, whatever the number of ranks: the repeat of an entry is the one numbered
        order = datalist_order([shard[4][0] for shard in shards], sum(len(p) for p in preds))
        if preds:
            preds, labels = [torch.cat(preds)[order]], [torch.cat(labels)[order]]
        # entries of one image (two labels of one scan) each keep a row name of their own: a.png, a.png_2
        names = [n for shard in shards for n in shard[2]]
        # a case of no name by its row, as one process numbers it: a rank's own count depends on the number of ranks
        names = numbered_repeats([f"case_{row}" if names[i] is None else names[i] for row, i in enumerate(order)])
        failed = [f for shard in shards for f in shard[3]]
        failed = [failed[i] for i in datalist_order([shard[4][1] for shard in shards], len(failed))]
        for f in failed:
            logger.warning("classification report: FAILED %s: %s", f["case"], f["reason"])
        scored = sum(len(p) for p in preds)
        self._ended_with = (len(failed), len(failed) + scored)
        if not preds and not failed:
            logger.warning("classification report: no predictions were gathered; nothing written to %s", self.output_dir)
            return
        if preds:
            probs, truth = torch.cat(preds), torch.cat(labels).numpy()
        else:  # every case failed: the report says so (0 scored, each failure listed) and replaces an earlier one
            num_classes = len(self.class_names)
            probs = torch.zeros(0, num_classes)
            truth = np.zeros((0, num_classes) if self.multi_label else (0,), dtype=np.int64)
        self.metrics = write_report(
            self.output_dir, probs, truth, self.class_names, self.multi_label, self.threshold, names, failed,
            self._checksum, self.split, self.shared_with,
        )
        logger.info(
            "classification report: accuracy %s, macro AUC %s -> %s", _fmt(self.metrics["accuracy"]),
            _fmt(self.metrics["macro_auc"]), self.output_dir,
        )
        self._listed_in = str(self.output_dir / "metrics.json")

    def _raise_if_failed(self, engine=None) -> None:
        # at the end of the run, after every handler's end-of-epoch step: the report is written first
        failed, total = self._ended_with
        raise_if_failed("evaluation", failed, total, self._listed_in, "scored")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _image_names(batch) -> list[str]:
    """Image file names of a collated or decollated MONAI batch (empty if unknown)."""
    items = batch if isinstance(batch, list) else [batch]
    names: list[str] = []
    for item in items:
        image = item.get("image") if isinstance(item, dict) else None
        meta = getattr(image, "meta", None) or (item.get("image_meta_dict") if isinstance(item, dict) else None) or {}
        src = meta.get("filename_or_obj")
        if src is None:
            return []
        names.extend([str(s) for s in src] if isinstance(src, (list, tuple)) else [str(src)])
    return [Path(n).name for n in names]
