"""A dataset that outlives a bad case: a failure to load or preprocess one input becomes a flagged placeholder.

Every item carries ``case`` (the input path) and ``failed`` (``""``, or one line saying why the case failed). The
inference handlers (:class:`~unimiss_monai.handlers.ForwardFailureGuard`, the writers and
:class:`~unimiss_monai.handlers.InferenceSummary`) skip flagged cases, add their own failures to ``failed``, and list
every failure in the run's summary; the evaluation reports (:class:`~unimiss_monai.handlers.SegmentationReport`,
:class:`~unimiss_monai.handlers.ClassificationReport`) score the other cases and list the flagged ones
(:func:`split_failed`). A training run takes none of it: every item of a split goes through its loading and checks
before any work, each failure worded by :func:`failed_case` as here, and :func:`refuse_failures` refuses the split,
naming every item that fails (:func:`~unimiss_monai.data.disk_cache.cached_dataset` does both as it fills its cache,
for the items of a :class:`DatalistSplit`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.data import Dataset

from unimiss_monai.data.datalists import absent_file, items_refusal
from unimiss_monai.data.dicom_checks import dicom_image_problem
from unimiss_monai.data.image_formats import damaged_file_line, listing_problem
from unimiss_monai.utils.errors import (
    failed_transform,
    failure_reason,
    own_file_error,
    raised_by_package,
    root_cause,
    user_error_message,
)

logger = logging.getLogger(__name__)

__all__ = ["CASE_KEY", "FAILED_KEY", "DatalistSplit", "TolerantDataset", "batch_items", "failed_case", "failure_of",
           "flagged_item", "mark_failed", "refuse_failures", "split_failed"]

#: item keys of the input path and of the failure message (empty when the case worked)
CASE_KEY, FAILED_KEY = "case", "failed"


class TolerantDataset(Dataset):
    """A MONAI ``Dataset`` whose items carry ``case`` (the input path) and ``failed`` (``""`` or the error message).

    Args:
        data: items with an ``"image"`` path; an item that already carries ``failed`` (its datalist reader could not
            read its label) fails with that reason, unloaded.
        transform: the preprocessing.
        placeholder_shape: ``(C, *spatial)`` of the zeros that stand in for a failed image (the network input size).
    """

    def __init__(self, data: Sequence[dict], transform: Callable | None, placeholder_shape: Sequence[int]) -> None:
        super().__init__(data=data, transform=transform)
        self.placeholder_shape = tuple(int(s) for s in placeholder_shape)

    def _transform(self, index: int):
        item = self.data[index]
        case = str(item.get("image", f"item {index}"))
        if reason := item.get(FAILED_KEY):  # flagged by its datalist reader (a label it cannot read): nothing to load
            logger.error("case %s failed: %s", case, reason)
            return {"image": torch.zeros(self.placeholder_shape), CASE_KEY: case, FAILED_KEY: str(reason)}
        try:
            out = super()._transform(index)
        except Exception as err:  # noqa: BLE001 - any failure of one case is reported, the others go on
            reason = failed_case(item, index, err)
            return {"image": torch.zeros(self.placeholder_shape), CASE_KEY: case, FAILED_KEY: reason}
        return {**out, CASE_KEY: case, FAILED_KEY: ""}


def failed_case(item: dict, index: int, err: Exception) -> str:
    """Why datalist item ``index`` (``item``) failed to load or preprocess with ``err``: one line naming the case, why
    and, where the error does not say it, the fix; logged as it is returned (the case goes on failing alone)."""
    case = str(item.get("image", f"item {index}"))
    # a folder a scan could not list stands in for its images: why and the fix, which a reader would not say
    # a file that is gone: which one (image or label) and the fix, where a reader says only "[Errno 2]"
    unlisted = listing_problem(case) or absent_file(item, ("image", "label"),
                                                    "fix the datalist entry or restore the file")
    # our own refusal of the image or its label names that file and the fix: it is the reason as it stands
    own = None if unlisted else own_file_error(err, _paths(item))
    reason = unlisted or own or failure_reason(err)
    problem = None if unlisted or own or user_error_message(err) else dicom_image_problem(case)
    if problem:  # a reader's internals: say what in the file it could not take, and the fix
        reason = f"{reason}; {problem}"
    elif not (unlisted or own) and (fix := _reader_fix(err, case)):
        # a damaged file (empty, cut short, another format renamed) is said so, in place of the reader's words
        reason = damaged_file_line(_paths(item)) or f"{reason}; {fix}"
    if not own and case not in reason:  # a reader's own error may not say which file it was reading
        reason = f"{case}: {reason}"
    # this serves training, evaluation and inference: the line names no stage
    logger.error("case %s failed: %s", case, reason)
    return reason


def _paths(item: dict) -> list[str]:
    """The input files of one datalist item (its image and, in evaluation, its label; a class label is no file)."""
    return [os.fspath(v) for k in ("image", "label") if isinstance(v := item.get(k), (str, os.PathLike))]


def _reader_fix(err: Exception, case: str) -> str:
    """The fix for a file a loader could not read, where the reader's own words (``not a gzip file``) say only what
    broke; ``""`` where the error says the fix itself (this package's), or is no reader's verdict on the file (a file
    that is gone, memory, a later transform)."""
    cause = root_cause(err)
    if (raised_by_package(err) or not (failed_transform(err) or "").startswith("Load") or not os.path.isfile(case)
            or isinstance(cause, (FileNotFoundError, MemoryError))):
        return ""
    if not os.access(case, os.R_OK):
        return "give this user read permission on it (chmod u+r)"
    return "it cannot be read as an image: replace it with an intact copy or drop the case"


class DatalistSplit(list):
    """The items of section ``split`` of the datalist file ``datalist``, as its reader gives them, in its order: a
    training run's data, which :func:`~unimiss_monai.data.disk_cache.cached_dataset` checks before any work, naming
    each failing item by its place in the file (:func:`refuse_failures`). Items given as a plain list (MONAI Label
    passes its own) name no file to refer to and are not checked up front."""

    def __init__(self, items: Sequence[dict], datalist: str | os.PathLike, split: str) -> None:
        super().__init__(items)
        self.datalist, self.split = datalist, split


def refuse_failures(failures: dict[int, str], total: int, datalist: str | os.PathLike, split: str) -> None:
    """Refuse one split of a training run's datalist (``total`` items) before any training where some of its items
    failed their loading and checks: ``failures`` maps each such item's place in ``datalist`` to its reason
    (:func:`failed_case`, which has logged it).

    Raises ``ValueError`` (:func:`~unimiss_monai.data.datalists.items_refusal`): one failing item's reason as it is,
    or the first few in datalist order with the rest counted, so a run does not stop at the first bad input its loader
    reaches (mid-epoch where nothing is cached) and a rerun find the next.
    """
    if not failures:
        return
    # each line as it is (a case's reason names its file): one bad item is that line, several are numbered
    bad = [failures[index] if len(failures) == 1 else f"[{index}] {failures[index]}" for index in sorted(failures)]
    raise ValueError(items_refusal(datalist, split, bad, "cannot be trained on; fix or remove each, then run again",
                                   total, logged=True))


def batch_items(batch) -> list[dict]:
    """The per-case dictionaries of an evaluator's ``state.batch``: a decollated list as it is, a collated dict
    (values listed per case) split into one dict per case."""
    if isinstance(batch, list):
        return batch
    if not isinstance(batch, dict):
        return []
    cases = batch.get(CASE_KEY)
    if not isinstance(cases, (list, tuple)):
        return [batch]
    return [{CASE_KEY: c, FAILED_KEY: f} for c, f in zip(cases, batch.get(FAILED_KEY) or [""] * len(cases))]


def flagged_item(item, where: str, base: str | os.PathLike, reason: str) -> dict:
    """The stand-in of datalist item ``item`` (at ``where``, its paths relative to ``base``) that its reader refuses
    with ``reason``: its image path (``where`` when it has none) and why, without a label, so that no loader takes it
    for a case to score: :class:`TolerantDataset` fails it unloaded, while the other cases go on."""
    image = item.get("image") if isinstance(item, dict) else None
    case = str(Path(base) / image) if isinstance(image, str) and image else where  # base / an absolute path: it
    kept = {k: v for k, v in item.items() if k != "label"} if isinstance(item, dict) else {}
    return {**kept, "image": case, FAILED_KEY: reason}


def mark_failed(item: dict, reason: str) -> None:
    """Flag one case (a decollated batch item) as failed, keeping the first reason it was given."""
    item[FAILED_KEY] = item.get(FAILED_KEY) or reason


def failure_of(item: dict, out) -> str:
    """Why one case failed (``""``: it worked): the flag of its batch item (loading, the forward pass) or of its
    output item (a post-processing step, ``SkipFailedd``)."""
    return str(item.get(FAILED_KEY) or (out.get(FAILED_KEY) if isinstance(out, dict) else "") or "")


def split_failed(outputs, batch) -> tuple[list, list[dict], list[dict[str, str]]]:
    """An evaluator's decollated ``state.output`` and ``state.batch`` -> ``(outputs, batch items, failures)``: the
    output and batch items of the cases that worked, and ``{"case", "reason"}`` of each flagged case.

    A flag may sit in the batch item (:class:`TolerantDataset`, the forward guard) or in the output item (a
    post-processing step that failed, ``SkipFailedd``). Items that carry no flag (a plain ``Dataset``), or an output
    that does not pair up with the batch item by item, are all taken as worked.
    """
    outs = outputs if isinstance(outputs, list) else [outputs]
    items = batch_items(batch)
    if len(items) != len(outs):
        return outs, items, []
    kept_outs, kept_items, failures = [], [], []
    for out, item in zip(outs, items):
        reason = failure_of(item, out)
        if reason:
            failures.append({"case": str(item.get(CASE_KEY, "")), "reason": reason})
        else:
            kept_outs.append(out)
            kept_items.append(item)
    return kept_outs, kept_items, failures
