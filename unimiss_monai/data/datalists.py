"""Fine-tune datalists: read one split of a decathlon-style datalist, refusing a missing or empty split in one line.

The four fine-tune bundles (CXR and CT segmentation and classification) read ``{"training": [...], "validation":
[...], "test": [...]}`` whose items are ``{"image": <path>, "label": <mask path or class>}``, paths relative to the
datalist's folder. Without this check a datalist with no (or an empty) ``training`` list reaches the sampler, which
fails with ``num_samples=0`` and names neither the file nor the key; such a datalist is easy to come by, e.g. the DRR
bundle's ``datalist.json``, whose ``training`` holds slab pairs for pretraining and is empty unless ``slab_depth`` is set.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from unimiss_monai.data.drr_run_folder import unfinished_run_problem
from unimiss_monai.utils.dist import is_rank_zero

__all__ = ["SHARED_KEY", "read_split", "load_datalist", "missing_datalist", "absent_file", "items_refusal",
           "require_files", "shared_counts", "shared_images"]

logger = logging.getLogger(__name__)

#: how many bad items a refusal of a split names, the others counted (every one is logged)
NAMED_ITEMS = 5

# what each item of a fine-tune split holds, for messages
ITEM_FORM = '{"image": <path>, "label": <mask path or class>}'

#: the key of an evaluation's record (``segmentation_report.json``, ``metrics.json``) that counts, per split that
#: fitted the model (``training``, and ``validation``, which chose the checkpoint), the scored images it lists too:
#: the report calls a test split held out only where there are none
SHARED_KEY = "shared_with"

#: the splits that fitted a model: trained on, or chose the checkpoint
_FITTING = ("training", "validation")


def missing_datalist(path: Path, fix: str) -> FileNotFoundError:
    """The one-line error for a datalist ``path`` (``<dataset_dir>/datalist.json``) that is not there, with ``fix``;
    a ``dataset_dir`` given as the datalist file itself is told as such (it read ``.../datalist.json/datalist.json``
    does not exist), and the folder of a DRR generation run that has not finished as one to finish."""
    if path.parent.is_file():
        return FileNotFoundError(f"--dataset_dir {str(path.parent)!r} is a file; pass the folder that holds the "
                                 f"datalist, named {path.name} there")
    if problem := unfinished_run_problem(path.parent):  # its datalist comes last: the run is to be finished
        return FileNotFoundError(problem)
    return FileNotFoundError(f"datalist {str(path)!r} does not exist; {fix}")


def absent_file(item, keys: tuple[str, ...], fix: str, base_dir: str | os.PathLike | None = None) -> str | None:
    """The one line, with ``fix``, for the first of ``item``'s ``keys`` files (``image``, ``label``; relative paths
    start at ``base_dir``) that does not exist; None when all are there, or the item or its values are no paths (left
    to the callers' own checks). The up-front check of a training split (:func:`require_files`) and a case that fails
    alone in evaluation or inference (:class:`~unimiss_monai.data.tolerant.TolerantDataset`) say it alike."""
    for key in keys:
        value = item.get(key) if isinstance(item, dict) else None
        if isinstance(value, str) and value:
            path = Path(base_dir) / value if base_dir is not None else value
            if not os.path.exists(path):
                return f"{key} {str(path)!r} does not exist; {fix}"
    return None


def require_files(items: list, datalist: str | os.PathLike, split: str, keys: tuple[str, ...] = ("image",),
                  base_dir: str | os.PathLike | None = None) -> None:
    """FileNotFoundError in one line naming ``datalist[split][i]`` and the file, for the first item whose ``keys``
    path (relative to ``base_dir``, by default the datalist's folder) does not exist.

    A training run checks its splits with this before any work: otherwise it starts (caching, epochs) and fails
    when it reaches the file, with a reader's words that name no datalist entry. Evaluation and inference do not:
    there a missing file fails its case alone."""
    base, beside = Path(base_dir) if base_dir is not None else Path(datalist).parent, Path(datalist).parent
    for index, item in enumerate(items):
        if line := absent_file(item, keys, f"fix the path (relative paths start at {base})", base):
            if base.resolve() != beside.resolve() and absent_file(item, keys, "", beside) is None:
                # MONAI's own default base is the datalist's folder, which a list kept apart from its data may assume
                line += (f"; its files are there relative to the datalist's own folder, {beside}, which relative "
                         f"paths here do not start from: write them relative to {base}, or absolute")
            raise FileNotFoundError(f"{datalist}[{split!r}][{index}]: {line}")


def read_split(datalist: str | os.PathLike, split: str = "training", base_dir: str | os.PathLike | None = None) -> list:
    """The raw items of ``split`` in the JSON file ``datalist`` (relative paths start at ``base_dir``, by default the
    datalist's folder, as the loaders read them).

    Raises:
        FileNotFoundError: no such file. ValueError (one line naming the file and the key): the file is not a JSON
            object, or ``split`` is missing, not a list, empty, or lists one image twice.

    Warns (log) when images of an evaluation split are in ``training`` too.
    """
    path = Path(datalist)
    if not path.is_file():
        raise missing_datalist(path, "write one or set dataset_dir to a `samples` output")
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"datalist {path} is not valid JSON ({err})") from None
    should = f"it should hold a list of {ITEM_FORM} items, paths relative to the datalist's folder"
    if not isinstance(content, dict):
        raise ValueError(f"datalist {path} is not a JSON object with a {split!r} key; {should}")
    if split not in content:
        raise ValueError(f"datalist {path} has no {split!r} key (it has {sorted(content)}); {should}")
    items = content[split]
    if not isinstance(items, list):
        raise ValueError(f"datalist {path}: {split!r} is a {type(items).__name__}, not a list; {should}")
    if not items:
        raise ValueError(f"datalist {path}: {split!r} is an empty list; {should}")
    root = Path(base_dir) if base_dir is not None else path.parent
    images = [_image_of(item, root) for item in items]
    # an image with its label: two raters' labels of one image are two items, the same pair twice is one item twice
    pairs = [(image, json.dumps(_label_of(item, root), sort_keys=True)) if image is not None else None
             for image, item in zip(images, items)]
    twice = next((pair for pair, n in Counter(pairs).items() if pair is not None and n > 1), None)
    if twice is not None:  # scored twice, an item weighs double in every mean; trained twice, it is oversampled unsaid
        written = items[pairs.index(twice)]["image"]  # as the datalist writes it first
        raise ValueError(f"datalist {path}: {split!r} lists {written} with the same label {pairs.count(twice)} times "
                         "(as one file, however its path is written); list each item once")
    # scores of images the model was trained on, or that chose its checkpoint, say nothing of how it does on new ones
    for other, shared in _shared(content, split, root).items():
        logger.warning("datalist %s: %d image(s) of %r are in %r too (e.g. %s): their scores are not held out",
                       path, len(shared), split, other, shared[0])
    return items


def shared_images(datalist: str | os.PathLike, split: str,
                  base_dir: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """The images of ``split`` (not ``training``) in the JSON file ``datalist`` that a split which fitted the model
    lists too (``training``, and ``validation``, which chose the checkpoint; not ``split`` itself), per split, as
    ``split`` writes them: one file however its path is written, relative paths from ``base_dir`` (by default the
    datalist's folder). Only splits that share images are keys. An evaluation records their numbers
    (:data:`SHARED_KEY`), so that the report does not call those scores held out. A datalist that cannot be read gives
    ``{}``: the evaluation's own reading of it refuses it, in its own words. Scoring ``training`` itself is warned of
    here, where only an evaluation asks: if the model was trained on this datalist, those scores are of images it
    was trained on. Nothing records which datalist trained a given model file (a release model, or one trained
    elsewhere, may never have seen them), so the warning says so conditionally, once per run (on rank 0)."""
    # its metrics.json records the split, but the log is where the scores are first read; read at config parse time,
    # maybe before the process group is joined, so torchrun's RANK tells the ranks apart too
    if split == "training" and is_rank_zero() and os.environ.get("RANK", "0") == "0":
        logger.warning("evaluating the 'training' split of %s: if the model was trained on this datalist, these images "
                       "fitted it, so their scores are not held out and overstate how it does on new images; "
                       "--eval_split test scores the held-out ones", datalist)
    try:
        content = json.loads(Path(datalist).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(content, dict):
        return {}
    return _shared(content, split, Path(base_dir) if base_dir is not None else Path(datalist).parent)


def shared_counts(shared: Mapping[str, Sequence[str] | int] | None) -> dict[str, int] | None:
    """:func:`shared_images` (the images, or already their numbers) as the numbers an evaluation records under
    :data:`SHARED_KEY`; ``None`` stays ``None`` (nothing recorded)."""
    return None if shared is None else {str(k): v if isinstance(v, int) else len(v) for k, v in shared.items()}


def _shared(content: dict, split: str, root: Path) -> dict[str, list[str]]:
    """:func:`shared_images` of a datalist's parsed ``content``."""
    items = content.get(split)
    if split == "training" or not isinstance(items, list):  # training's images are meant to be trained on
        return {}
    out = {}
    for other in _FITTING:
        if other == split or not isinstance(content.get(other), list):
            continue
        seen = {_image_of(item, root) for item in content[other]} - {None}
        shared = [item["image"] for item in items if (image := _image_of(item, root)) is not None and image in seen]
        if shared:
            out[other] = shared
    return out


def _image_of(item, root: Path) -> str | None:
    """The image path of a datalist item as the file it names (relative paths from ``root``, links followed), so that
    ``a/./x.png``, ``a/x.png`` and its absolute path are one; None if none."""
    image = item.get("image") if isinstance(item, dict) else None
    return os.path.realpath(root / image) if isinstance(image, str) else None


def _label_of(item, root: Path):
    """The label of a datalist item, a file as the file it names (see :func:`_image_of`), a class as it is."""
    label = item.get("label") if isinstance(item, dict) else None
    if isinstance(label, str) and label and (root / label).is_file():
        return os.path.realpath(root / label)
    return label


def load_datalist(
    datalist: str | os.PathLike, split: str = "training", is_segmentation: bool = True,
    base_dir: str | os.PathLike | None = None, require_foreground: bool = False, check_files: bool = False,
) -> list[dict]:
    """``monai.data.load_decathlon_datalist(datalist, is_segmentation, split, base_dir)`` after :func:`read_split`
    has checked that ``split`` is a non-empty list (a drop-in for that call in the bundles' configs).

    ``require_foreground``: refuse a split none of whose label maps holds a structure (a training run on them learns
    nothing and published a model with a validation Dice of 0, exiting 0). The labels are read in order up to the first
    with a nonzero value: one file of a split as it should be."""
    from monai.data import load_decathlon_datalist

    items = read_split(datalist, split, base_dir)
    needed = ("image", "label") if is_segmentation else ("image",)
    for index, item in enumerate(items):  # else MONAI's LoadImaged fails with a KeyError naming neither file nor item
        missing = [key for key in needed if not isinstance(item, dict) or key not in item]
        if missing:
            raise ValueError(f"datalist {datalist}: item {index} of {split!r} has no {' or '.join(map(repr, missing))} "
                             f"({str(item)[:80]}); every item is {ITEM_FORM}")
    if check_files:
        require_files(items, datalist, split, needed, base_dir)
    loaded = load_decathlon_datalist(datalist, is_segmentation, split, base_dir)
    if require_foreground:
        _require_foreground(loaded, datalist, split)
    return loaded


def _require_foreground(items: list[dict], datalist, split: str) -> None:
    """ValueError (one line naming the datalist and the split) when no label map of ``items`` that can be read holds a
    nonzero value; a label that cannot be read is left to fail its own case in the run."""
    import numpy as np
    from monai.transforms import LoadImage

    load, read = LoadImage(image_only=True), 0
    for item in items:
        try:
            label = load(item["label"])
        except Exception:  # noqa: BLE001 - the run's own loading fails that case, naming the file
            continue
        read += 1
        if np.any(np.asarray(label) != 0):
            return
    if read:
        raise ValueError(f"datalist {datalist}: no label map of {split!r} holds a structure ({read} read, every "
                         "voxel 0, the background): training on them learns nothing; check the label files (an "
                         "export of empty segmentations?) and the 'label' paths")


def items_refusal(path: str | os.PathLike, split: str, bad: Sequence[str], verdict: str, total: int | None = None,
                  logged: bool = False) -> str:
    """The one line refusing ``split`` of the datalist ``path`` for its ``bad`` items (one line each, naming the item
    and the fix): one bad item's line as it is; several named (the first :data:`NAMED_ITEMS`, the datalist's path
    left out of each) after ``verdict`` (``"cannot be read"``), and the rest counted, so that one run tells them all.
    ``total``: the items of the split, said beside the count. ``logged``: each line is in the log already (else it is
    logged here when some go unnamed)."""
    if len(bad) == 1:
        return bad[0]
    if len(bad) > NAMED_ITEMS and not logged:  # the refusal names a few; the log keeps every one
        for line in bad:
            logger.error("%s", line)
    named = "; ".join(line.removeprefix(str(path)) for line in bad[:NAMED_ITEMS])
    more = f"; and {len(bad) - NAMED_ITEMS} more (each logged above)" if len(bad) > NAMED_ITEMS else ""
    count = f"{len(bad)} of the {total} items" if total is not None else f"{len(bad)} items"
    return f"datalist {path}: {count} of {split!r} {verdict}: {named}{more}"
