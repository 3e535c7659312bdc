"""Find the CT volumes in a folder, each with its label map when one is paired with it.

A folder is read in this order:

1. ``datalist.json`` (decathlon style): its ``"testing"`` list (else ``"training"``; inference reads ``"test"`` and
   ``"validation"`` too, see :func:`find_ct_cases`) of ``{"image": ..., "label": ..., "label_names": ..., "name":
   ...}`` entries, paths relative to the folder, each named by its ``name``, else its file name (files of one name in
   several folders by their path: ``s0001/ct.nii.gz`` -> ``s0001_ct``);
2. otherwise every ``*.nii`` / ``*.nii.gz`` file in it and every folder below it holding a DICOM series, at any
   depth and named by its path below the folder (``P1/ST1/SE1`` -> ``P1_ST1_SE1``); the folder itself when it is
   one (:func:`~unimiss_monai.data.series_folders.scan_series` has the rule: of nested folders holding DICOM files,
   the one with the most is the series). A file ``<name>_labels.nii.gz`` (or ``.nii``, or a volume format ITK
   reads: ``.nrrd``, ``.mha``, ...) is the label map of ``<name>``, and ``<name>_labels.csv`` (columns
   ``structure,id``) or ``<name>_labels.json`` (``{"<value>": "<name>"}``) names its values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unimiss_monai.data.case_names import CaseNames, name_below, names_apart
from unimiss_monai.data.ct_io import CTInputError
from unimiss_monai.data.image_formats import (
    NIFTI_SUFFIXES,
    image_suffix,
    is_label_map_name,
    listing_problem,
    scan_images,
)
from unimiss_monai.data.listed_inputs import DATALIST, listed_entries
from unimiss_monai.data.locators import read_structure_names
from unimiss_monai.data.series_folders import SeriesScan, scan_series
from unimiss_monai.utils.json_files import json_kind

logger = logging.getLogger(__name__)

__all__ = ["CTCase", "find_ct_cases", "is_datalist_file", "read_label_names", "label_channels",
           "LABEL_SUFFIX", "DATALIST", "MAX_LABEL_VALUES"]

LABEL_SUFFIX = "_labels"


@dataclass(frozen=True)
class CTCase:
    """One CT to process: ``name`` (used for output files), ``image`` (NIfTI file or DICOM folder), optional
    ``labels`` (label map on the CT grid) and ``label_names`` (CSV or JSON naming the label values)."""

    name: str
    image: Path
    labels: Path | None = None
    label_names: Path | None = None


#: volume formats a CT or its label map may come in (a ``.mhd``/``.nhdr`` header names the file holding its voxels);
#: a folder scan takes NIfTI files alone as CTs: the other formats in a folder of CTs are as often masks,
#: segmentations (3D Slicer's), deformation fields or single slices, each of which would fail or be rendered as a CT
CT_VOLUME_SUFFIXES = NIFTI_SUFFIXES + (".mha", ".mhd", ".nrrd", ".nhdr")


def _stem(path: Path) -> str:
    """The case name of a CT file: its name without the volume format's suffix (``ct01.mhd`` -> ``ct01``)."""
    suffix = image_suffix(path.name, CT_VOLUME_SUFFIXES)
    return path.name[: -len(suffix)] if suffix else path.name


def _first_existing(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    return next((folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").exists()), None)


def _case_for(image: Path) -> CTCase:
    name = _stem(image)
    folder = image.parent
    labels = _first_existing(folder, name + LABEL_SUFFIX, CT_VOLUME_SUFFIXES)
    names = _first_existing(folder, name + LABEL_SUFFIX, (".csv", ".json"))
    return CTCase(name=name, image=image, labels=labels, label_names=names)


def _cases_from_datalist(datalist: Path, splits: Sequence[str]) -> list[CTCase]:
    try:  # image paths and names are checked there, as every bundle reads a folder's datalist
        key, entries = listed_entries(datalist, splits, "fix it (or move it away to read every CT in the folder)")
    except ValueError as err:
        raise CTInputError(str(err)) from None
    for i, entry in enumerate(entries):
        # one path per key: a list or a null would fail later as a TypeError that names neither file nor entry
        bad = [k for k in ("label", "label_names") if k in entry
               and not (isinstance(entry[k], str) and entry[k]) and entry[k] is not None]
        if bad:
            raise CTInputError(f"{datalist}: {key!r} entry {i} has {bad[0]!r} = {entry[bad[0]]!r}; each entry's "
                               "'label' and 'label_names' (where given) is one path as a string")
    root = datalist.parent

    def resolve(value: str | None) -> Path | None:
        return None if not value else (root / value)

    names = _entry_names([root / e["image"] for e in entries], [e.get("name") for e in entries])
    cases = [CTCase(name=n, image=root / e["image"], labels=resolve(e.get("label")),
                    label_names=resolve(e.get("label_names"))) for n, e in zip(names, entries)]
    return _refuse_duplicate_names(cases, f"or give them different 'name' entries in {datalist}")


def _entry_names(images: list[Path], given: list[str | None]) -> list[str]:
    """The case name of each listed CT: its ``name`` where given, else its file name without the format, files of one
    such name in different folders (TotalSegmentator's ``s0001/ct.nii.gz``) by their path (``s0001_ct``:
    :func:`~unimiss_monai.data.case_names.names_apart`)."""
    return names_apart(images, [g or _stem(p) for p, g in zip(images, given)], [bool(g) for g in given])


def _refuse_duplicate_names(cases: list[CTCase], fix: str = "") -> list[CTCase]:
    """``cases`` as they are; ``CTInputError`` naming both inputs when two share a ``name`` (their outputs would
    overwrite each other), before anything is written."""
    names = CaseNames()
    for case in cases:
        if reason := names.clash(case.name, str(case.image), "their outputs would overwrite each other", fix):
            raise CTInputError(reason)
        names.take(case.name, str(case.image))
    return cases


def is_datalist_file(path: Path) -> bool:
    """Whether ``path`` is a datalist file (a ``.json`` of any name), which stands for its folder as a folder's
    ``datalist.json`` does: the CTs it lists lie around it."""
    return path.suffix.lower() == ".json" and path.is_file()


def _say_left_in_sub_folders(root: Path, scan: SeriesScan) -> None:
    """Warn about the CT files (volumes, DICOM files) in the sub-folders of ``root`` that no series folder holds
    and the series scan (``scan``) did not name: a folder scan reads the CTs in the folder itself, so those would be
    left out unsaid (``patient1/ct.nii.gz``). The scan's listing is used: the tree is walked once."""
    left = []
    for folder, names in scan.others.items():
        if folder == root:
            continue
        found = [folder / n for n in names if image_suffix(n, CT_VOLUME_SUFFIXES)] + scan.strays.get(folder, [])
        left += [r for p in sorted(found) if p not in scan.said and not is_label_map_name(r := p.relative_to(root))]
    if left:
        logger.warning("%s: %d CT file(s) in sub-folders left out (%s): a folder's CTs are read from the folder "
                       "itself and from DICOM series folders at any depth; list the others in a %s there", root,
                       len(left), ", ".join(map(str, left[:3])) + (", ..." if len(left) > 3 else ""), DATALIST)


def find_ct_cases(path: str | Path, splits: Sequence[str] = ("testing", "training")) -> list[CTCase]:
    """The CT cases in ``path`` (a folder, a NIfTI file, a datalist ``.json`` file, or a DICOM series folder), in path
    order. A folder's label maps (:func:`~unimiss_monai.data.image_formats.is_label_map_name`: ``*_labels``,
    ``*_label``, ``*_seg``) are no CTs; ``<case>_labels`` is that case's label map. Of a datalist, the first
    non-empty list of ``splits`` is read (:func:`~unimiss_monai.data.listed_inputs.listed_entries`): DRR generation
    renders its ``testing`` else ``training`` CTs, inference runs on the held-out cases
    (:data:`~unimiss_monai.data.listed_inputs.INFERENCE_SPLITS`).

    Raises:
        CTInputError: ``path`` does not exist, holds no CT, or holds two CTs of the same case name (``ct01.nii``
            and ``ct01.nii.gz``, or a datalist's ``a/scan.nii.gz`` and ``b/scan.nii.gz``): their outputs would collide.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CTInputError(f"{path}: not found; point dataset_dir at a folder of CTs or create one with "
                           f"`python -m unimiss_monai samples --out DIR`")
    if is_datalist_file(path):
        return _cases_from_datalist(path, splits)
    if path.is_file():
        return [_case_for(path)]
    if problem := listing_problem(path):  # before anything in it is looked for: a folder locked whole hides that too
        raise CTInputError(problem)
    if (path / DATALIST).is_file():
        return _cases_from_datalist(path / DATALIST, splits)
    scan = scan_series(path)  # what is left out of a series (files beside it, label folders) is said there
    found = scan.series
    # a folder that cannot be listed may hold CTs: a case of its own that fails in one line, so the run ends non-zero
    locked = [CTCase(name=name_below(path, folder), image=folder) for folder in scan.unlistable]
    if found and found[0][0] == path:  # the folder is one series (walked first, and then nothing below it is)
        return [CTCase(name=path.name, image=path), *locked]
    slices = scan.strays.get(path, [])  # DICOM files outnumbered by the NIfTI CTs beside them: no series
    if slices:
        nifti = [n for n in scan.others[path] if image_suffix(n, NIFTI_SUFFIXES) and not is_label_map_name(n)]
        logger.warning("%s: %d DICOM file(s) among %d NIfTI CTs left out (%s): a DICOM series is read from a folder "
                       "of its own", path, len(slices), len(nifti),
                       ", ".join(p.name for p in slices[:3]) + (", ..." if len(slices) > 3 else ""))
    # the scan every bundle shares: label maps (a case's labels, found by _case_for, or a segmentation) are left out
    # and said, as are image files of other formats (read when a datalist names them)
    fix = "list them in a datalist.json there, or convert them to NIfTI"
    # stray slices (if any) were named above, with the fix that applies to them
    cases = [_case_for(entry) for entry in scan_images(path, NIFTI_SUFFIXES, fix=fix,
                                                       accounted=[*slices, *scan.said, *scan.unlistable])]
    cases += locked
    # series at any depth (an archive's export nests them: PATIENT/STUDY/SERIES), each named by its path below the
    # folder, which stays the same when series are added; the files in sub-folders no series holds are said
    for folder, _ in found:
        labels = _first_existing(folder.parent, folder.name + LABEL_SUFFIX, CT_VOLUME_SUFFIXES)
        names = _first_existing(folder.parent, folder.name + LABEL_SUFFIX, (".csv", ".json"))
        name = name_below(path, folder)
        cases.append(CTCase(name=name, image=folder, labels=labels, label_names=names))
    _say_left_in_sub_folders(path, scan)
    if not cases:
        raise CTInputError(f"{path}: no CT found (looked for {DATALIST}, *.nii, *.nii.gz and DICOM series folders); "
                           f"add CTs there or create samples with `python -m unimiss_monai samples --out DIR`")
    return _refuse_duplicate_names(sorted(cases, key=lambda c: c.image.relative_to(path).parts))


_JSON_NAMES = 'a JSON object of label value -> structure name, e.g. {"1": "liver", "2": "spleen"}'
_NAMES_FORMS = f"{_JSON_NAMES}, or a CSV with columns 'structure' and 'id'"


def read_label_names(path: str | Path | None) -> dict[int, str]:
    """Label value -> name from a ``structures.csv``-style CSV or a ``{"<value>": "<name>"}`` JSON (also name -> value,
    and a whole ``dataset.json`` holding either as ``"labels"``: the Medical Segmentation Decathlon's and nnU-Net's
    forms); {} for None.

    Raises:
        CTInputError: one line naming the file, what is wrong and the expected format: missing or unreadable, not
            valid JSON / CSV, a value that is not a whole number, negative or naming nothing, or no value but 0
            (the background, which is never a channel: a name given to 0 is dropped).
    """
    if path is None:
        return {}
    path = Path(path)
    try:
        names = _json_label_names(path) if path.suffix.lower() == ".json" else read_structure_names(path)
    except OSError as err:  # missing (a datalist's 'label_names' path), a folder, no permission
        raise CTInputError(f"{path}: cannot read this label names file ({err.strerror or err}); fix the path (a "
                           f"datalist entry's 'label_names') or remove it") from err
    except ValueError as err:  # both readers' messages name the file, what is wrong and the format
        raise CTInputError(str(err)) from err
    if not names:
        raise CTInputError(f"{path}: names no label value; expected {_NAMES_FORMS}")
    negative = sorted(v for v in names if v < 0)
    if negative:  # a label map may hold no negative value (label_channels): such a name would name nothing
        raise CTInputError(f"{path}: names negative label value(s) {_few(negative)}; label values are 0 (background) "
                           f"and positive whole numbers: fix them in {path.name}")
    # 0 is what no structure covers, never a channel: MONAI's and nnU-Net's label files name it "background"
    names.pop(0, None)
    by_name: dict[str, list[int]] = {}
    for value, name in sorted(names.items()):
        by_name.setdefault(name, []).append(value)
    twice = {name: values for name, values in by_name.items() if len(values) > 1}
    if twice:  # each value is a channel told by its name: two channels of one name, and which is which is lost
        name, values = next(iter(twice.items()))
        raise CTInputError(f"{path}: gives the name {name!r} to label values {_few(values)}; each value is a "
                           f"structure of its own (a channel of its DRRs), so give each its own name in {path.name}, "
                           "or give those voxels one value in the label map")
    if not names:
        raise CTInputError(f"{path}: names only the background (0), no structure to project; name the structures' "
                           f"values in {path.name} or remove it")
    return names


def _json_label_names(path: Path) -> dict[int, str]:
    """``read_label_names`` of a JSON file; ``ValueError`` naming the file, the fault and the expected format."""
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); expected {_JSON_NAMES}") from err
    if not isinstance(content, dict):  # a list of names, say: which value each one names is a guess
        raise ValueError(f"{path}: holds a JSON {json_kind(content)}, not an object; expected {_JSON_NAMES}")
    if isinstance(content.get("labels"), dict):  # a whole dataset.json (Medical Segmentation Decathlon, nnU-Net)
        content = content["labels"]
    if content and all(type(v) is int for v in content.values()):  # nnU-Net v2's "labels": name -> value
        if len(set(content.values())) < len(content):
            raise ValueError(f"{path}: names one label value twice ({content}); expected {_JSON_NAMES}")
        content = {str(value): name for name, value in content.items()}
    names = {}
    for key, name in content.items():
        try:
            value = int(key)
        except ValueError:
            raise ValueError(f"{path}: key {key!r} is not a label value (a whole number); "
                             f"expected {_JSON_NAMES}") from None
        if not isinstance(name, str) or not name:  # {"1": {"name": ...}} would name the channel "{'name': ...}"
            raise ValueError(f"{path}: label {key!r} is named {json.dumps(name)}, not a name; expected {_JSON_NAMES}")
        names[value] = name
    return names


# More distinct values than any segmentation of a CT holds: TotalSegmentator, the largest in common use, has 117
# classes, and atlases of a few hundred structures exist; a CT passed as its own label map holds thousands (one per HU
# value from -1024 to 3000), which would become thousands of "structures" label_40, label_41, ...
MAX_LABEL_VALUES = 1000
# Air in HU: a label map may hold a negative "ignore" value (-1, or PyTorch's -100), never one this low; a smooth or
# small CT passed as its own label map can hold fewer than MAX_LABEL_VALUES values (a phantom: 263), but holds air
AIR_HU = -1000
# fewer distinct values than this, even with air among them, are a label map padded with the CT's fill value
MIN_CT_VALUES = 50


def _ct_like(labels: Path, nonzero: Sequence[int]) -> str | None:
    """Why a label map holding the sorted distinct nonzero ``nonzero`` values looks like a CT (its HU) rather than a
    segmentation, as one line naming the file and the fix; None when it does not."""
    if len(nonzero) > MAX_LABEL_VALUES:
        why = f"more than any segmentation has (at most {MAX_LABEL_VALUES})"
    elif len(nonzero) > MIN_CT_VALUES and nonzero[0] <= AIR_HU:  # a few values with a -1024 pad are a padded map
        why = f"down to {nonzero[0]}, air in HU"
    else:
        return None
    return (f"{labels}: holds {len(nonzero)} distinct values from {nonzero[0]} to {nonzero[-1]}, {why}; it does not "
            "look like a label map (is it the CT itself?): pair the CT with its segmentation (0 background, 1, 2, ... "
            "one value per structure)")


def label_channels(labels: Path, values: Sequence[int], names: dict[int, str], names_file: Path | None
                   ) -> dict[int, str]:
    """The channels to project from the label map ``labels`` holding the distinct ``values`` (0 the background), as
    label value -> name: every value ``names`` (read from ``names_file``) names, in value order, even one absent
    from this map (every CT named by one file gets the same channels), else every positive value present
    (``label_<value>``).

    Raises:
        CTInputError: one line naming the map and the fix: it looks like a CT (more than :data:`MAX_LABEL_VALUES`
            distinct values, or air in HU), holds negative values, or values that ``names_file`` does not name (they
            would vanish from the projections).
    """
    nonzero = sorted(v for v in values if v != 0)
    if reason := _ct_like(labels, nonzero):
        raise CTInputError(reason)
    negative = [v for v in nonzero if v < 0]
    if negative:  # an "ignore" value, or a signed overflow: either way its voxels would vanish from the projections
        raise CTInputError(f"{labels}: label map holds negative values ({_few(negative)}); label values are 0 "
                           "(background) and positive whole numbers: map them to 0 (voxels to ignore, padding) or to "
                           "positive values")
    if not names:
        return {v: f"label_{v}" for v in nonzero}
    unnamed = [v for v in nonzero if v not in names]
    if unnamed:
        raise CTInputError(f"{labels}: label map holds {len(unnamed)} value(s) that {names_file} does not name "
                           f"({_few(unnamed)}), which would vanish from the projections; name them there, pass "
                           "a names file that names every value, or map them to 0 if they mark voxels to ignore")
    return {v: names[v] for v in sorted(names)}


def _few(values: Sequence[int], shown: int = 5) -> str:
    """``"2, 3, 4"``, or ``"2, 3, 4, 5, 6, ... (9 in all)"`` for a long list."""
    text = ", ".join(str(v) for v in values[:shown])
    return text if len(values) <= shown else f"{text}, ... ({len(values)} in all)"
