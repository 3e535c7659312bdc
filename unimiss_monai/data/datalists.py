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
from pathlib import Path

__all__ = ["read_split", "load_datalist", "missing_datalist"]

logger = logging.getLogger(__name__)

# what each item of a fine-tune split holds, for messages
ITEM_FORM = '{"image": <path>, "label": <mask path or class>}'


def missing_datalist(path: Path, fix: str) -> FileNotFoundError:
    """The one-line error for a datalist ``path`` (``<dataset_dir>/datalist.json``) that is not there, with ``fix``;
    a ``dataset_dir`` given as the datalist file itself is told as such (it read ``.../datalist.json/datalist.json``
    does not exist)."""
    if path.parent.is_file():
        return FileNotFoundError(f"--dataset_dir {str(path.parent)!r} is a file; pass the folder that holds the "
                                 f"datalist, named {path.name} there")
    return FileNotFoundError(f"datalist {str(path)!r} does not exist; {fix}")


def read_split(datalist: str | os.PathLike, split: str = "training") -> list:
    """The raw items of ``split`` in the JSON file ``datalist``.

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
    images = [_image_of(item) for item in items]
    # an image with its label: two raters' labels of one image are two items, the same pair twice is one item twice
    pairs = [(image, json.dumps(item.get("label"), sort_keys=True)) if image is not None else None
             for image, item in zip(images, items)]
    twice = next((pair for pair, n in Counter(pairs).items() if pair is not None and n > 1), None)
    if twice is not None:  # scored twice, an item weighs double in every mean; trained twice, it is oversampled unsaid
        raise ValueError(f"datalist {path}: {split!r} lists {twice[0]} with the same label {pairs.count(twice)} times; "
                         "list each item once")
    if split != "training" and isinstance(content.get("training"), list):
        seen = set(_image_of(item) for item in content["training"]) - {None}
        shared = [image for image in images if image in seen]
        if shared:  # scores of images the model was trained on say nothing of how it does on new ones
            logger.warning("datalist %s: %d image(s) of %r are in 'training' too (e.g. %s): their scores are not "
                           "held out", path, len(shared), split, shared[0])
    return items


def _image_of(item) -> str | None:
    """The image path of a datalist item, normalised so that ``a/./x.png`` and ``a/x.png`` are one; None if none."""
    image = item.get("image") if isinstance(item, dict) else None
    return os.path.normpath(image) if isinstance(image, str) else None


def load_datalist(
    datalist: str | os.PathLike, split: str = "training", is_segmentation: bool = True,
    base_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """``monai.data.load_decathlon_datalist(datalist, is_segmentation, split, base_dir)`` after :func:`read_split`
    has checked that ``split`` is a non-empty list (a drop-in for that call in the bundles' configs)."""
    from monai.data import load_decathlon_datalist

    items = read_split(datalist, split)
    needed = ("image", "label") if is_segmentation else ("image",)
    for index, item in enumerate(items):  # else MONAI's LoadImaged fails with a KeyError naming neither file nor item
        missing = [key for key in needed if not isinstance(item, dict) or key not in item]
        if missing:
            raise ValueError(f"datalist {datalist}: item {index} of {split!r} has no {' or '.join(map(repr, missing))} "
                             f"({str(item)[:80]}); every item is {ITEM_FORM}")
    return load_decathlon_datalist(datalist, is_segmentation, split, base_dir)
