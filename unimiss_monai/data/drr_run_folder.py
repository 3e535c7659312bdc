"""Which files of a DRR generation output folder are DRRs: what a 2D bundle pointed at that folder reads.

The DRR bundle writes, beside each DRR (``<case>/<case>_AP.nii.gz``), its preview (``.png``), its projected label maps
and a contact sheet of all views, and lists the DRRs in ``datalist.json`` (``testing``: the whole views, ``training``:
the slab pairs' ``drr``). A scan for images would take every one of those files as a radiograph: each DRR twice, and the
contact sheet, a figure of several panels, as one more. The whole views are what a radiograph model reads; a slab's DRR
shows part of the anatomy, on pixels stretched to a square detector.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["DATALIST", "RUN_KEYS", "drr_run_images", "is_drr_run", "record_path", "unfinished_run_problem"]

logger = logging.getLogger(__name__)

#: the run datalist a DRR generation run writes into its output folder, and its lists
DATALIST = "datalist.json"
RUN_KEYS = ("testing", "training", "failures")


def record_path(output_dir: str | os.PathLike, name: str) -> Path:
    """The done record of the CT ``name`` in a run's ``output_dir``: written last, with the CT's outputs, and what a
    rerun checks to skip the CT."""
    return Path(output_dir) / name / f"{name}_done.json"


def _run_datalist(folder: str | os.PathLike) -> dict | None:
    """The ``datalist.json`` of ``folder`` as read, when it is a JSON object with a DRR run's ``testing``,
    ``training`` and ``failures`` lists; None otherwise (no such file, or a training set's datalist)."""
    try:
        listed = json.loads((Path(folder) / DATALIST).read_text())
        return listed if all(isinstance(listed[key], list) for key in RUN_KEYS) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_drr_run(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is the output of a DRR generation run: its ``datalist.json`` is a JSON object with the run's
    ``testing``, ``training`` and ``failures`` lists (the lists of a training set's datalist are another matter)."""
    return _run_datalist(folder) is not None


def unfinished_run_problem(folder: str | os.PathLike) -> str | None:
    """One line when ``folder`` is the output of a DRR generation run that has not finished: folders of CTs with their
    done record (``<name>/<name>_done.json``) and no run ``datalist.json``, which a run removes as it starts and writes
    as it ends; ``None`` otherwise. Read as a folder of images, its previews and contact sheets would pass as
    radiographs, and the CTs not yet rendered would be missing unsaid."""
    folder = Path(folder)
    if os.path.exists(folder / DATALIST):  # the run's, or one the user wrote there: read as such by the caller
        return None
    try:
        done = sum(1 for d in folder.iterdir() if record_path(folder, d.name).is_file())
    except OSError:
        return None
    if not done:
        return None
    return (f"{folder} is the output of a DRR generation run that has not finished ({done} CT(s) rendered, no "
            f"{DATALIST}, which the run writes when every CT is done): rerun the DRR bundle with the same "
            "--output_dir to finish it (the CTs rendered are skipped)")


def drr_run_images(folder: str | os.PathLike) -> list[Path] | None:
    """The whole-view DRRs of ``folder`` when it is the output of a DRR generation run (its ``datalist.json`` has the
    run's ``testing``, ``training`` and ``failures`` lists, each DRR entry with its ``view``), in datalist order, and
    said in the log; ``None`` for any other folder.

    Raises:
        FileNotFoundError: the run's datalist lists no whole view (a slab-only run, or every CT failed), or the run has
            not finished (:func:`unfinished_run_problem`).
    """
    listed = _run_datalist(folder)  # read once: a run's datalist or not, and its entries
    if listed is None:
        if problem := unfinished_run_problem(folder):
            raise FileNotFoundError(problem)
        return None  # no datalist, or another kind of datalist (a training set's): read as such by the caller
    try:
        entries = [(e["image"], e["view"]) for e in listed["testing"]]
    except (KeyError, TypeError):
        return None
    if not all(isinstance(path, str) and isinstance(view, str) for path, view in entries):
        return None
    if not entries:
        raise FileNotFoundError(f"{folder}: a DRR generation output whose {DATALIST} lists no whole-view DRR (a run of "
                                "slabs only, or every CT failed: see its 'failures'); pass --dataset_dir with your "
                                "radiographs, or list the DRRs to read in a datalist of your own")
    logger.info("%s is the output of a DRR generation run: its %d whole-view DRRs listed in %s, not their previews, "
                "contact sheets or slabs", folder, len(entries), DATALIST)
    return [Path(folder) / path for path, _ in entries]
