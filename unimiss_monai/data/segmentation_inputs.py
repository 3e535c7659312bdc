"""The inputs of a segmentation run: every CT of a folder, or the held-out list of its datalist (inference), and the
split an evaluation scores, whose items without a label map fail alone (:func:`load_evaluation_datalist`)."""

from __future__ import annotations

import os
from pathlib import Path

from unimiss_monai.data.case_names import NAME_KEY
from unimiss_monai.data.ct_inputs import find_ct_cases
from unimiss_monai.data.datalists import ITEM_FORM, read_split
from unimiss_monai.data.listed_inputs import INFERENCE_SPLITS
from unimiss_monai.data.samples import find_dataset
from unimiss_monai.data.tolerant import flagged_item

__all__ = ["find_segmentation_inputs", "load_evaluation_datalist"]


def find_segmentation_inputs(dataset_dir: str | os.PathLike, name: str = "ct_segmentation") -> list[dict[str, str]]:
    """``[{"image": path, "name": case name}]`` for every CT in ``dataset_dir``: NIfTI files and DICOM series folders
    (:func:`~unimiss_monai.data.find_ct_cases`), or the first non-empty ``testing``, ``test``, ``validation`` or
    ``training`` list of its ``datalist.json`` (a ``samples`` output resolves to its ``name`` data set first)."""
    cases = find_ct_cases(find_dataset(dataset_dir, name), INFERENCE_SPLITS)
    return [{"image": str(case.image), NAME_KEY: case.name} for case in cases]


def load_evaluation_datalist(datalist: str | os.PathLike, split: str,
                             base_dir: str | os.PathLike | None = None) -> list[dict]:
    """``[{"image": path, "label": path, ...}]``: the ``split`` of the JSON file ``datalist`` that a segmentation
    evaluation scores, as :func:`~unimiss_monai.data.datalists.load_datalist` reads it (relative paths start at
    ``base_dir``, by default the datalist's folder), except that an item without its ``image`` or ``label`` (absent,
    null or empty) fails alone rather than refusing the split.

    Such an item comes back as ``{"image": its path, "failed": one line naming the datalist entry and the fix}``
    (no ``label``), which :class:`~unimiss_monai.data.tolerant.TolerantDataset` fails while the others are scored, as
    the classification evaluation fails an item whose class it cannot read. A label path that names no file is left
    to the dataset, which fails its case in the same way.

    Raises:
        FileNotFoundError, ValueError: the datalist or the split cannot be read
            (:func:`~unimiss_monai.data.datalists.read_split`), or an item is no ``{"image", "label"}`` mapping
            (the list is then no datalist of cases).
    """
    from monai.data import load_decathlon_datalist

    path = Path(datalist)
    raw = read_split(path, split, base_dir)
    for index, item in enumerate(raw):  # else MONAI fails with a TypeError naming neither the file nor the item
        if not isinstance(item, dict):
            raise ValueError(f"datalist {path}: item {index} of {split!r} is {str(item)[:80]}, not an object; every "
                             f"item is {ITEM_FORM}")
    base = Path(base_dir) if base_dir is not None else path.parent
    items = load_decathlon_datalist(path, True, split, base_dir)  # the paths each item has, made absolute
    for index, item in enumerate(raw):
        if missing := [key for key in ("image", "label") if not item.get(key)]:
            where = f"{path}[{split!r}][{index}]"
            what = " and ".join({"image": "image", "label": "label map"}[key] for key in missing)
            reason = (f"{where}: has no {' or '.join(map(repr, missing))} (it has {sorted(item)}); add the "
                      f"path{'s' if len(missing) > 1 else ''} of its {what}, or leave the item out of the evaluation")
            items[index] = flagged_item(item, where, base, reason)
    return items
