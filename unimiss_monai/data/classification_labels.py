"""Classification datalists: read a split, check its labels against the class names, balance the classes.

A datalist is decathlon-style JSON, ``{"training": [...], "validation": [...], "test": [...]}``, whose items have an
``"image"`` path (relative to the datalist's folder or absolute) and a ``"label"`` given as any of:

- a class name (``"nodule"``) or class index (``1``), for exclusive classes;
- a list of class names (``["nodule", "cardiomegaly"]``, ``[]`` for none), for multi-label findings;
- a 0/1 vector of length C in channel order (``[1, 0]``), for either.

:func:`load_classification_datalist` returns items with a canonical label: an ``int`` index for exclusive classes, a
``float`` 0/1 list of length C for multi-label ones. Items whose label cannot be read refuse a training split, all
named in one line with the fix; in evaluation each fails its case alone, flagged with its line, and the others are
scored.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unimiss_monai.data.case_names import named_inputs
from unimiss_monai.data.datalists import items_refusal, read_split, require_files
from unimiss_monai.data.drr_run_folder import drr_run_images
from unimiss_monai.data.image_formats import (
    SCANNED_SUFFIXES,
    listing_problem,
    preferred_sub_folder,
    scan_images,
)
from unimiss_monai.data.listed_inputs import listed_images
from unimiss_monai.data.samples import held_out_images
from unimiss_monai.data.series_folders import SeriesScan, scan_series
from unimiss_monai.data.tolerant import FAILED_KEY, flagged_item
from unimiss_monai.utils.args import as_bool

logger = logging.getLogger(__name__)

__all__ = ["load_classification_datalist", "canonical_label", "balanced_sample_weights", "list_images"]


def canonical_label(label, class_names: Sequence[str], multi_label: bool, where: str = "label"):
    """One item's label as an ``int`` (exclusive) or a 0/1 ``float`` list of length C (multi-label).

    Raises:
        ValueError: unknown class name, index out of range, or a vector of the wrong length; ``where`` names the item.
    """
    names = list(class_names)
    n = len(names)

    def index_of(value) -> int:
        if isinstance(value, str):
            if value not in names:
                raise ValueError(f"{where}: unknown class name {value!r}; the bundle's class_names are {names} (fix the datalist or override class_names)")
            return names.index(value)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < n:
            return int(value)
        raise ValueError(f"{where}: class {value!r} is neither one of {names} nor an index in [0, {n}); label the "
                         "item with one of those")

    if isinstance(label, (list, tuple)) and label and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in label) and (multi_label or len(label) > 1):
        if len(label) != n:
            raise ValueError(f"{where}: label vector {list(label)} has length {len(label)}, but there are {n} classes "
                             f"{names}; give one 0/1 per class, in that order")
        if any(v not in (0, 1) for v in label):  # a soft label ([0.5, 0]) says neither present nor absent
            odd = [v for v in label if v not in (0, 1)]
            raise ValueError(f"{where}: label vector {list(label)} holds {odd[0]!r}: each class is present (1) or "
                             f"absent (0), and soft labels are not read; {_how_to_label(names, multi_label)}")
        if not multi_label:
            if sum(label) != 1:
                raise ValueError(f"{where}: exclusive classes need exactly one 1 in {list(label)}; set multi_label=true for several findings")
            return int(np.argmax(label))
        return [float(v) for v in label]
    if multi_label:
        values = label if isinstance(label, (list, tuple)) else [label]
        hot = [0.0] * n
        for v in values:
            hot[index_of(v)] = 1.0
        return hot
    if isinstance(label, (list, tuple)):
        if len(label) != 1:
            raise ValueError(f"{where}: exclusive classes take one label, got {list(label)}; set multi_label=true for several findings")
        label = label[0]
    return index_of(label)


def _how_to_label(names: list[str], multi_label: bool) -> str:
    """The fix of a label that cannot be read: the forms a label of ``names`` takes, each with an example."""
    one_hot = [1] + [0] * (len(names) - 1)
    if multi_label:
        return (f"give one 0 or 1 per class in the order {names} (e.g. {one_hot}), or the list of the classes "
                f"present ({[names[0]]}, [] for none)")
    return (f"give one 0 or 1 per class in the order {names} with a single 1 (e.g. {one_hot}), or the class name "
            f"({names[0]!r}) or index (0)")


def load_classification_datalist(
    datalist: str | os.PathLike, split: str, class_names: Sequence[str], multi_label: bool = False,
    base_dir: str | os.PathLike | None = None, check_images: bool = True, refuse_bad_items: bool | None = None,
) -> list[dict]:
    """Items ``{"image": absolute path, "label": canonical label, ...}`` of one split of a datalist.

    Args:
        datalist: the JSON file. split: its key, e.g. ``"training"``, ``"validation"``, ``"test"``.
        class_names: the C class names, in output-channel order.
        multi_label: labels are sets of findings (multi-hot) rather than one exclusive class.
        base_dir: folder that relative image paths start from. Defaults to the datalist's folder.
        check_images: refuse an item whose image does not exist (training, before any work); evaluation passes
            False, so that such a case fails alone in the run (``TolerantDataset``) and the others are scored.
        refuse_bad_items: refuse the split when an item's label (or its ``image`` entry) cannot be read, naming every
            such item in the one line; False: such an item comes back as ``{"image": its path, "failed": its one-line
            reason}`` (no ``label``), which :class:`~unimiss_monai.data.tolerant.TolerantDataset` fails alone while
            the others are scored. Defaults to ``check_images`` (training refuses, evaluation fails the case).

    Raises:
        FileNotFoundError: the datalist is missing, or (``check_images``) an image.
        ValueError: no such split, or an empty one (see :func:`unimiss_monai.data.datalists.read_split`), or
            (``refuse_bad_items``) bad labels (see :func:`canonical_label`).
    """
    path = Path(datalist)
    # the one check of every fine-tune bundle: a missing, non-list or empty split fails here in one line
    base = Path(base_dir) if base_dir is not None else path.parent
    raw = read_split(path, split, base)
    listed = _listed_class_names(path, class_names)
    items, bad = [], []
    for i, item in enumerate(raw):
        # the entry by its index and by its image as the datalist gives it: entries of one image (two labels of one
        # scan) differ in the index only, and the image is how the user knows the case
        image = item.get("image") if isinstance(item, dict) else None
        where = f"{path}[{split!r}][{i}]" + (f" (image {image!r})" if isinstance(image, str) and image else "")
        try:
            items.append(_read_item(item, where, base, listed, list(class_names), multi_label))
        except ValueError as err:
            bad.append(str(err))
            items.append(flagged_item(item, where, base, str(err)))
    if bad and (check_images if refuse_bad_items is None else refuse_bad_items):
        raise ValueError(items_refusal(path, split, bad, "cannot be read"))
    if check_images:
        require_files(raw, path, split, ("image",), base)
    labels = [it["label"] for it in items if FAILED_KEY not in it]
    if labels:
        _say_missing_classes(path, split, labels, list(class_names), multi_label)
    return items


def _read_item(item, where: str, base: Path, listed: list[str] | None, names: list[str], multi_label: bool) -> dict:
    """One raw datalist item with its image made absolute and its label canonical; ``ValueError`` naming ``where``."""
    if not isinstance(item, dict) or "image" not in item or "label" not in item:
        got = sorted(item) if isinstance(item, dict) else repr(item)
        raise ValueError(f"{where}: each item needs 'image' and 'label' keys, got {got}")
    if not isinstance(item["image"], str) or not item["image"]:
        raise ValueError(f"{where}: 'image' is {item['image']!r}; give one image path as a string")
    image = Path(item["image"]) if Path(item["image"]).is_absolute() else base / item["image"]
    label = _in_bundle_order(item["label"], listed, names, multi_label) if listed else item["label"]
    return {**item, "image": str(image), "label": canonical_label(label, names, multi_label, where)}


def _say_missing_classes(path: Path, split: str, labels: list, names: list[str], multi_label: bool) -> None:
    """Warn about the classes ``split`` holds no example of (or, multi-label, only examples of): trained without one,
    the network cannot learn that class; validated without one, its AUC is undefined and model selection leaves it
    out. Both ran unsaid."""
    hot = np.zeros((len(labels), len(names)), bool)
    for row, label in zip(hot, labels):
        if isinstance(label, (int, np.integer)):
            row[int(label)] = True
        else:
            row[:] = np.asarray(label, dtype=float) > 0.5
    for c, name in enumerate(names):
        positives = int(hot[:, c].sum())
        lacking = "no example" if positives == 0 else "no case without it" if multi_label and positives == len(labels) \
            else None
        if lacking is None:
            continue
        why = ("the network cannot learn it" if split == "training" else
               "its AUC is undefined there, so scores over the classes leave it out")
        logger.warning("datalist %s: class %r has %s in %r (%d items): %s; add such items or drop the class from "
                       "class_names", path, name, lacking, split, len(labels), why)


def _listed_class_names(path: Path, class_names: Sequence[str]) -> list[str] | None:
    """The datalist's own ``class_names`` when they order the bundle's classes otherwise (its index and vector labels
    count in that order: read as the bundle's, a nodule became a cardiomegaly with no word); None when absent or the
    same. ``ValueError`` in one line when they name other classes."""
    listed = json.loads(path.read_text()).get("class_names")
    names = list(class_names)
    if listed is None or listed == names:
        return None
    if not isinstance(listed, list) or sorted(map(str, listed)) != sorted(names) or len(set(listed)) != len(listed):
        raise ValueError(f"{path}: its class_names {listed} are not the bundle's {names}; pass --class_names "
                         f"{shlex.quote(json.dumps(listed))} to use the datalist's, or label the datalist with the "
                         "bundle's classes")
    logger.info("%s: labels read in the datalist's class order %s (the bundle's outputs: %s)", path, listed, names)
    return [str(name) for name in listed]  # as the bundle names them: a class 1 listed as a number is class "1"


def _in_bundle_order(label, listed: list[str], names: list[str], multi_label: bool):
    """``label`` (an index, a list of indices, a 0/1 vector or class names) counted in the order ``listed``, as the
    same classes counted in the bundle's order ``names``; names and anything malformed stay as they are (the
    checks of :func:`canonical_label` then name them)."""

    def index(v):
        ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < len(listed)
        return names.index(listed[v]) if ok else v

    numbers = isinstance(label, (list, tuple)) and label and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in label)
    if numbers and (multi_label or len(label) > 1):  # a vector: channel j of the bundle is class names[j]
        return [label[listed.index(name)] for name in names] if len(label) == len(names) else label
    if isinstance(label, (list, tuple)):
        return [index(v) for v in label]
    return index(label)


def balanced_sample_weights(items: Sequence[dict], num_classes: int) -> list[float]:
    """Per-item sampling weights that make every class equally likely (for ``torch.utils.data.WeightedRandomSampler``).

    Exclusive labels: weight ``1 / count(class)``. Multi-label: the mean of ``1 / count`` over the item's positive
    findings, and ``1 / count(no finding)`` for items without any.
    """
    labels = [it["label"] for it in items]
    if all(isinstance(lab, (int, np.integer)) for lab in labels):
        counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes)
        return [1.0 / counts[lab] for lab in labels]
    hot = np.asarray(labels, dtype=float).reshape(len(labels), num_classes) > 0.5
    counts = hot.sum(0)
    none_count = max(int((~hot.any(1)).sum()), 1)
    return [float(np.mean(1.0 / counts[h])) if h.any() else 1.0 / none_count for h in hot]


def list_images(folder: str | os.PathLike, suffixes: Sequence[str] = SCANNED_SUFFIXES,
                series: bool = False) -> list[dict]:
    """``[{"image": path}, ...]`` for every image file under ``folder`` (recursive, sorted) — inference inputs; with
    ``series``, every DICOM series folder too, as one input (:func:`~unimiss_monai.data.series_folders.scan_series`;
    the files in it are its own) named by its path below ``folder`` (``P1/ST1/SE1`` -> ``"name": "P1_ST1_SE1"``), as
    is an image in a sub-folder whose file name another input shares
    (:func:`~unimiss_monai.data.case_names.named_inputs`).

    A data set of a ``samples`` output gives its ``test`` images only (:func:`~unimiss_monai.data.samples.held_out_images`:
    the demo models trained on the others), and, without ``series``, the output of a DRR generation run the
    whole-view DRRs its ``datalist.json`` lists (:func:`~unimiss_monai.data.drr_run_folder.drr_run_images`), not their
    previews. Another folder with a ``datalist.json`` gives the images of its ``testing``, else ``test``, else
    ``validation``, else ``training`` list (:func:`~unimiss_monai.data.listed_inputs.listed_images`). When
    ``folder`` has an ``images`` sub-folder (the layout of the ``samples`` classification sets, whose previews lie
    beside it), only that sub-folder is searched, and the images elsewhere are said to be left out. Label maps
    (:func:`is_label_map_name`: ``*_label``, ``*_seg``, ``labelsTr/``) are left out, and so is a DICOM without a
    suffix unless ``suffixes`` has ``.dcm``; each left-out group is logged.

    Raises:
        FileNotFoundError: the folder does not exist, is a file, or holds no image with one of ``suffixes``.
    """
    root = Path(folder)
    if root.exists() and not root.is_dir():  # one image is not a folder of them: said as such, not as "missing"
        raise FileNotFoundError(f"input folder {str(root)!r} is a file, not a folder; pass --dataset_dir with the "
                                "folder of your images (put a single image in a folder of its own)")
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {str(root)!r} does not exist; pass --dataset_dir with your images")
    if problem := listing_problem(root):  # refused before anything is loaded, as the CT bundles refuse it
        raise ValueError(problem)
    held_out = held_out_images(root)
    if held_out == []:
        raise FileNotFoundError(f"the samples data set {str(root)!r} has no test image; pass --dataset_dir with your images")
    if held_out is not None:  # as listed: a test image that is gone fails its case in one line
        logger.info("%s is a samples data set: its %d test images, not those the model was trained on; point "
                    "--dataset_dir at a folder of images to run on all of them", root, len(held_out))
        return [{"image": str(p)} for p in held_out]
    series = as_bool(series, "series")
    # a lister of 2D images: a DRR run's DRRs, not their previews and contact sheets, which a scan would take as images
    # too; a lister of volumes (series: the CT classifier) scans such a folder as any other
    drrs = None if series else drr_run_images(root)
    if drrs is not None:
        return named_inputs(root, drrs)
    if (listed := listed_images(root)) is not None:  # a fine-tune data set: its test images, not its training ones
        return listed
    root = preferred_sub_folder(root, "images", tuple(suffixes))
    scan = scan_series(root, suffixes) if series else SeriesScan([], set())
    # a folder the scan could not list is an input of its own, which fails in one line (scan_images does the same)
    folders = [folder for folder, _ in scan.series] + scan.unlistable
    # the series' files are theirs, and the DICOM files and folders the series scan named are not named twice
    files = scan_images(root, tuple(suffixes), recursive=True,
                        accounted=[*(p for _, own in scan.series for p in own), *scan.said, *scan.unlistable])
    if not files and not folders:
        looked = ", ".join(suffixes) + (", DICOM series folders" if series else "")
        raise FileNotFoundError(f"no image ({looked}) under {str(root)!r}; pass --dataset_dir with your images")
    return named_inputs(root, sorted(files + folders), series=folders)
