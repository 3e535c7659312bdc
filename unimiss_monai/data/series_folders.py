"""Which folders under a folder hold one DICOM series each: the rule every CT bundle's folder scan applies.

A folder is a series when it holds DICOM files, no fewer than the CT volumes beside them: a stray slice among NIfTI
CTs makes no series, while a series' own conversion (dcm2niix writes it beside the slices) leaves it one. Of nested
such folders, the one with the most DICOM files is the series: a dose report beside the series folders of an export
makes none, and a series folder with a report in a sub-folder stays one. Whatever a scan leaves out is said: volumes
beside a series, the DICOM files of nested folders that lost, label-map folders holding DICOM files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from unimiss_monai.data.image_formats import (
    NIFTI_SUFFIXES,
    cannot_list,
    dicom_files_in,
    image_suffix,
    is_label_map_folder,
    is_label_map_name,
    walk_folders,
)

logger = logging.getLogger(__name__)

__all__ = ["SeriesScan", "scan_series"]


def _say_left_beside(folder: Path, volumes: Sequence[str]) -> None:
    # volumes beside the slices were left out unsaid: often the series' own conversion (dcm2niix writes it there),
    # so said rather than refused
    if volumes:
        logger.warning("%s: read as one DICOM series; %d image file(s) beside its slices left out (%s): a folder "
                       "holding DICOM files is one series, so put other CTs in a folder of their own", folder,
                       len(volumes), ", ".join(volumes[:3]) + (", ..." if len(volumes) > 3 else ""))


@dataclass(frozen=True)
class SeriesScan:
    """What :func:`scan_series` found: ``series``, ``(folder, its files)`` per series (its ``.dcm`` slices and the
    volumes beside them, which a scan for images then leaves to the series:
    :func:`~unimiss_monai.data.image_formats.scan_images`' ``accounted``); ``said``, the other files the scan
    named in a warning as left out (DICOM files beside or inside the series folders), for a later scan to leave
    unsaid; ``strays``, folder -> its DICOM files where they make no series (fewer than the volumes beside them),
    which the caller reads or says; and ``others``, folder -> its visible file names for every other folder walked
    (label-map folders not), so that a caller saying what lies there walks no second time; ``unlistable``, the
    folders that cannot be listed (warned about here), which a caller lists as inputs that fail in one line
    (:func:`~unimiss_monai.data.image_formats.cannot_list`), so that the run ends non-zero."""

    series: list[tuple[Path, list[Path]]]
    said: set[Path]
    strays: dict[Path, list[Path]] = field(default_factory=dict)
    others: dict[Path, list[str]] = field(default_factory=dict)
    unlistable: list[Path] = field(default_factory=list)


def scan_series(root: str | Path, suffixes: Sequence[str] = NIFTI_SUFFIXES) -> SeriesScan:
    """The folders under ``root`` (``root`` itself included) that are read as one DICOM series each, by
    :func:`~unimiss_monai.data.ct_inputs.find_ct_cases`' rule for a folder: it holds DICOM files, no fewer than the
    volumes (``suffixes``, label maps not counted) beside them. A stray slice among CT volumes makes no series; a
    series' own conversion beside its slices leaves it one. Of a series folder and series folders below it, the one
    with the most DICOM files is the series: a dose report beside the series of an export makes none, and a series
    folder stays one with a report in a sub-folder. What is left out is said.

    Hidden folders are not looked into, linked ones are; label-map folders (``labelsTr/``, ``*_labels``) are left out
    and said to be (warned about where they hold DICOM files); a folder that cannot be listed is warned about.
    """
    root = Path(root)
    found, labels, unlistable = [], [], []

    def unreadable(err: OSError) -> None:
        relative = Path(err.filename).relative_to(root)
        if is_label_map_folder(relative):
            labels.append(relative)  # left out unread, as a listed one is: no CT
            return
        logger.warning("%s", cannot_list(err.filename, err))
        unlistable.append(Path(err.filename))

    strays: dict[Path, list[Path]] = {}
    others: dict[Path, list[str]] = {}
    for folder, dirs, files in walk_folders(root, unreadable):
        relative = folder.relative_to(root)
        # a label-map folder (ct01_labels/), or one in a labels* folder (labelsTr/): its DICOM files are no CT
        if is_label_map_folder(relative):
            labels.append(relative)
            dirs[:] = []
            continue
        names = sorted(f for f in files if not f.startswith("."))
        volumes = [n for n in names if image_suffix(n, tuple(suffixes)) and not is_label_map_name(n)]
        # counted up to what decides it: an export of thousands of slices opens as many as there are volumes beside;
        # short of that, every DICOM file of the folder was opened, and the list is whole
        wanted = max(1, len(volumes))
        dicom = list(islice(dicom_files_in(folder, names), wanted))
        if len(dicom) >= wanted:
            own = [n for n in names if n.lower().endswith(".dcm")] + volumes
            found.append((folder, [folder / n for n in own], volumes, names))
            continue
        others[folder] = names
        if dicom:
            strays[folder] = dicom
    _say_label_folders(root, labels)
    # nested candidates, top-down: the one with the most DICOM files (counted only here, where two compete) is the
    # series, and the files of the others are said to be left out
    said: set[Path] = set()
    dropped: set[Path] = set()
    above = {parent for folder, *_ in found for parent in folder.parents}
    listing = {folder: names for folder, *_, names in found}
    for folder, *_ in found:
        if folder in dropped or folder not in above:
            continue
        below = [f for f, *_ in found if folder in f.parents and f not in dropped]
        losers, files = _losers(folder, below, listing)
        where = "beside the series folders below it" if losers == [folder] else "in folders below the series folder"
        logger.warning("%s: %d DICOM file(s) %s left out (%s): a DICOM series is read from a folder of its own",
                       folder, len(files), where, _names(files, folder))
        said.update(files)
        dropped.update(losers)
    series = []
    for folder, own, volumes, names in found:
        if folder in dropped:  # its other files are the caller's to say, as any other folder's
            others[folder] = names
        else:
            _say_left_beside(folder, volumes)
            series.append((folder, own))
    return SeriesScan(series, said, strays, others, unlistable)


def _losers(folder: Path, below: Sequence[Path], listing: dict[Path, list[str]]) -> tuple[list[Path], list[Path]]:
    """The folders left out, and their DICOM files, where ``folder`` and the candidate series folders ``below`` it
    compete: ``below`` when ``folder`` holds no fewer DICOM files than any of them, else ``folder``. The folders below
    are counted only up to one more than ``folder`` holds: a stray file at the top of a large export opens two files
    of each series below, not all of them. ``listing``: each folder's file names, as walked."""
    top = list(dicom_files_in(folder, listing[folder]))
    listed = [list(islice(dicom_files_in(f, listing[f]), len(top) + 1)) for f in below]
    if any(len(files) > len(top) for files in listed):
        return [folder], top
    return list(below), [p for files in listed for p in files]


def _names(paths: Sequence[Path], folder: Path) -> str:
    relative = [str(p.relative_to(folder)) for p in paths[:3]]
    return ", ".join(relative) + (", ..." if len(paths) > 3 else "")


def _say_label_folders(root: Path, labels: Sequence[Path]) -> None:
    """Say which label-map folders a series scan left out: warned where DICOM files lie in them (a label map kept as
    slices, or a CT in a folder whose name reads as one: ``Labelson_J/SE1``), else logged."""
    def holds_dicom(relative: Path) -> bool:
        return any(next(dicom_files_in(here), None) is not None for here, _, _ in walk_folders(root / relative))

    dicom = [r for r in labels if holds_dicom(r)]
    if dicom:
        logger.warning("%s: %d label-map folder(s) holding DICOM files left out, not taken as CT series (%s): a label "
                       "map is read from a volume file (<case>_labels.nii.gz); rename a folder that holds a CT", root,
                       len(dicom), ", ".join(map(str, dicom[:3])) + (", ..." if len(dicom) > 3 else ""))
    others = [r for r in labels if r not in dicom]
    if others:
        logger.info("%s: %d label-map folder(s) left out, not taken as series (%s)", root, len(others),
                    ", ".join(map(str, others[:3])) + (", ..." if len(others) > 3 else ""))
