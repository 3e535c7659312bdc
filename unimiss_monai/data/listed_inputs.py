"""The inputs a folder's ``datalist.json`` lists: an inference run given such a folder runs on its held-out list.

A ``datalist.json`` stands for its folder in every bundle that reads a folder of inputs, so that a fine-tune data set
(``{"training": [...], "validation": [...], "test": [...]}``) is inferred on its ``test`` cases, not on every image
beside it, the training images included. The list read is logged, with how to run on every file instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from unimiss_monai.data.case_names import NAME_KEY, named_inputs
from unimiss_monai.data.drr_run_folder import DATALIST, is_drr_run

__all__ = ["INFERENCE_SPLITS", "DATALIST", "listed_entries", "listed_images"]

logger = logging.getLogger(__name__)

#: the lists of a folder's datalist an inference run reads, the first non-empty one: its held-out cases (``testing``
#: as the DRR bundle and ``samples`` write it, ``test`` as the fine-tune datalists and the Medical Segmentation
#: Decathlon's ``dataset.json`` do), else ``validation`` (cases no model learnt from, though one was chosen on them),
#: else ``training`` (a datalist of cases with no other list)
INFERENCE_SPLITS = ("testing", "test", "validation", "training")


def listed_entries(datalist: str | os.PathLike, splits: Sequence[str], fix: str,
                   content: object = None) -> tuple[str, list[dict]]:
    """``(key, entries)``: the first non-empty list of ``splits`` in the JSON file ``datalist`` (``content``: as
    already read), each entry a dict with an ``"image"`` path (relative to the datalist's folder) and, where given, a
    ``"name"`` that names its outputs. A plain path (the Decathlon's ``"test": ["./imagesTs/x.nii.gz"]``) is taken
    as ``{"image": path}``.

    Raises:
        ValueError: one line naming the file, with ``fix``: not JSON, none of ``splits`` a non-empty list, an entry
            with no image path, or a name that is not a plain file name (it names output files: ``../x`` would
            write beside the output folder).
    """
    try:
        content = json.loads(Path(datalist).read_text()) if content is None else content
    except OSError as err:
        raise ValueError(f"{datalist}: cannot be read ({err.strerror or err}); {fix}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{datalist}: not valid JSON ({err}); {fix}") from err
    key = next((k for k in splits if isinstance(content, dict) and content.get(k)), None)
    # an empty list falls through to the next like a missing one; none at all is an error, never a run of no input
    if key is None or not isinstance(content[key], list):
        wanted = " or ".join(repr(k) for k in splits)
        raise ValueError(f"{datalist}: expected a non-empty {wanted} list of {{'image': ...}} entries; {fix}")
    entries = [{"image": e} if isinstance(e, str) else e for e in content[key]]
    for i, entry in enumerate(entries):
        image = entry.get("image") if isinstance(entry, dict) else None
        if not (isinstance(image, str) and image):
            raise ValueError(f"{datalist}: {key!r} entry {i} is {str(entry)[:80]}, with no image path; each entry is "
                             f"a path or {{'image': <path>, ...}}; {fix}")
        name = entry.get(NAME_KEY)
        if name is not None and not (isinstance(name, str) and name and name not in (".", "..")
                                     and not any(c in name for c in "/\\:\0")):
            raise ValueError(f"{datalist}: {key!r} entry {i} has 'name' = {name!r}; a case name names the case's "
                             "output files, so give a plain name without '/', '\\' or ':' (and not '.' or '..')")
    # an inference run with no held-out list: these may be the very cases its model learnt (DRR generation renders
    # a datalist's training CTs as a matter of course)
    if key in ("validation", "training") and tuple(splits) == INFERENCE_SPLITS:
        seen = ("a model trained on it is run on its own training cases" if key == "training" else
                "these are the cases a fine-tune run chose its best model on, so their figures flatter it")
        logger.warning("%s: no non-empty %s list, so its %r list (%d entries) is the input: %s; add a 'test' list of "
                       "held-out cases", datalist, " or ".join(repr(k) for k in splits[:splits.index(key)]), key,
                       len(entries), seen)
    else:
        logger.info("%s: its %r list (%d entries) is the input, not the other files of its folder", datalist, key,
                    len(entries))
    return key, entries


def listed_images(folder: str | os.PathLike) -> list[dict[str, str]] | None:
    """``[{"image": path}]`` of the list an inference run reads in ``folder``'s ``datalist.json``
    (:data:`INFERENCE_SPLITS`, :func:`listed_entries`), each with ``"name"`` where the entry gives one or where images
    in sub-folders share a file name; None when there is no such file, when it is a DRR run's (read by
    :func:`~unimiss_monai.data.drr_run_folder.drr_run_images`), or when it is a JSON object with none of those lists
    (a pretraining datalist): the folder is then scanned, as said in a warning. A file that cannot be read or is no
    JSON is refused (:func:`listed_entries`): scanning instead would run on the training images it keeps apart. An
    image that is gone fails its own case in the run, in one line."""
    datalist = Path(folder) / DATALIST
    if not datalist.is_file() or is_drr_run(folder):
        return None
    fix = "fix it, or move it away to run on every image in the folder"
    try:
        content = json.loads(datalist.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        content = None  # refused below, naming the file: a list that cannot be read is no datalist of another kind
    if content is not None and not (isinstance(content, dict) and any(key in content for key in INFERENCE_SPLITS)):
        logger.warning("%s holds no %s list (a datalist of another kind): every image of its folder is run on",
                       datalist, " or ".join(repr(k) for k in INFERENCE_SPLITS))
        return None
    _, entries = listed_entries(datalist, INFERENCE_SPLITS, fix, content)
    images = [Path(os.path.abspath(datalist.parent / e["image"])) for e in entries]
    # named by their path below the folder they share, as a folder scan names them: P1/IM1.dcm and P2/IM1.dcm would
    # otherwise both be IM1, and the second would fail as overwriting the first's outputs
    shared = os.path.commonpath([p.parent for p in images])
    return [{**found, **({NAME_KEY: e[NAME_KEY]} if e.get(NAME_KEY) else {})}
            for found, e in zip(named_inputs(shared, images), entries)]
