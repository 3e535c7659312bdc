"""Find the CT volumes in a folder, each with its label map when one is paired with it.

A folder is read in this order:

1. ``datalist.json`` (decathlon style): the ``"testing"`` list (else ``"training"``) of ``{"image": ..., "label": ...,
   "label_names": ...}`` entries, paths relative to the folder;
2. otherwise every ``*.nii`` / ``*.nii.gz`` file and every sub-folder holding a DICOM series (the folder itself when it
   is one). A file ``<name>_labels.nii.gz`` (or ``.nii``) is the label map of ``<name>``, and ``<name>_labels.csv``
   (columns ``structure,id``) or ``<name>_labels.json`` (``{"<value>": "<name>"}``) names its values.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from unimiss_monai.data.case_names import CaseNames
from unimiss_monai.data.ct_io import CTInputError, is_dicom_series_dir
from unimiss_monai.data.image_formats import NIFTI_SUFFIXES, image_suffix, is_label_map_name
from unimiss_monai.data.locators import read_structure_names

logger = logging.getLogger(__name__)

__all__ = ["CTCase", "find_ct_cases", "is_datalist_file", "read_label_names", "LABEL_SUFFIX", "DATALIST"]

LABEL_SUFFIX = "_labels"
DATALIST = "datalist.json"


@dataclass(frozen=True)
class CTCase:
    """One CT to process: ``name`` (used for output files), ``image`` (NIfTI file or DICOM folder), optional
    ``labels`` (label map on the CT grid) and ``label_names`` (CSV or JSON naming the label values)."""

    name: str
    image: Path
    labels: Path | None = None
    label_names: Path | None = None


# volume formats ITK reads but a folder scan does not pick up (a folder's other files are often not CTs)
_OTHER_VOLUMES = (".mha", ".mhd", ".nrrd", ".nhdr")


def _stem(path: Path) -> str:
    """The case name of a CT file: its name without the volume format's suffix (``ct01.mhd`` -> ``ct01``)."""
    suffix = image_suffix(path.name, NIFTI_SUFFIXES + _OTHER_VOLUMES)
    return path.name[: -len(suffix)] if suffix else path.name


def _first_existing(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    return next((folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").exists()), None)


def _case_for(image: Path) -> CTCase:
    name = _stem(image)
    folder = image.parent
    labels = _first_existing(folder, name + LABEL_SUFFIX, (".nii.gz", ".nii"))
    names = _first_existing(folder, name + LABEL_SUFFIX, (".csv", ".json"))
    return CTCase(name=name, image=image, labels=labels, label_names=names)


_OR_DELETE = " (a folder's datalist.json: or delete it to render every CT in the folder)"


def _cases_from_datalist(datalist: Path) -> list[CTCase]:
    try:
        content = json.loads(datalist.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CTInputError(f"{datalist}: not valid JSON ({err}); fix it{_OR_DELETE}") from err
    # an empty "testing" list falls back to "training" like a missing one; both empty is an error, never a run
    # that succeeds having read no CT
    entries = (content.get("testing") or content.get("training")) if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and "image" in e for e in entries):
        raise CTInputError(f"{datalist}: expected a non-empty 'testing' list of {{'image': ...}} entries; fix it"
                           f"{_OR_DELETE}")
    for i, entry in enumerate(entries):
        # one path per key: a list or a null would fail later as a TypeError that names neither file nor entry
        bad = [k for k in ("image", "label", "label_names", "name") if k in entry
               and not (isinstance(entry[k], str) and entry[k]) and not (k != "image" and entry[k] is None)]
        if bad:
            raise CTInputError(f"{datalist}: entry {i} has {bad[0]!r} = {entry[bad[0]]!r}; each entry's 'image' (and "
                               "'label', 'label_names', 'name' where given) is one path or name as a string")
    root = datalist.parent

    def resolve(value: str | None) -> Path | None:
        return None if not value else (root / value)

    cases = [CTCase(name=e.get("name") or _stem(Path(e["image"])), image=root / e["image"], labels=resolve(e.get("label")),
                    label_names=resolve(e.get("label_names"))) for e in entries]
    return _refuse_duplicate_names(cases, f"or give them different 'name' entries in {datalist}")


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


def find_ct_cases(path: str | Path) -> list[CTCase]:
    """The CT cases in ``path`` (a folder, a NIfTI file, a datalist ``.json`` file, or a DICOM series folder), in name
    order. A folder's label maps (:func:`~unimiss_monai.data.image_formats.is_label_map_name`: ``*_labels``,
    ``*_label``, ``*_seg``) are no CTs; ``<case>_labels`` is that case's label map.

    Raises:
        CTInputError: ``path`` does not exist, holds no CT, or holds two CTs of the same case name (``ct01.nii`` and
            ``ct01.nii.gz``, or a datalist's ``a/scan.nii.gz`` and ``b/scan.nii.gz``): their outputs would collide.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CTInputError(f"{path}: not found; point dataset_dir at a folder of CTs or create one with "
                           f"`python -m unimiss_monai samples --out DIR`")
    if is_datalist_file(path):
        return _cases_from_datalist(path)
    if path.is_file():
        return [_case_for(path)]
    if (path / DATALIST).is_file():
        return _cases_from_datalist(path / DATALIST)
    if is_dicom_series_dir(path):
        return [CTCase(name=path.name, image=path)]
    cases, label_maps = [], []
    for entry in sorted(path.iterdir()):
        if entry.is_file() and entry.name.lower().endswith(NIFTI_SUFFIXES) and is_label_map_name(entry.name):
            label_maps.append(entry.name)  # a case's labels (found by _case_for) or a segmentation: never a CT
        elif entry.is_file() and entry.name.lower().endswith(NIFTI_SUFFIXES):
            cases.append(_case_for(entry))
        elif entry.is_dir() and not entry.name.startswith(".") and is_dicom_series_dir(entry):
            labels = _first_existing(path, entry.name + LABEL_SUFFIX, (".nii.gz", ".nii"))
            names = _first_existing(path, entry.name + LABEL_SUFFIX, (".csv", ".json"))
            cases.append(CTCase(name=entry.name, image=entry, labels=labels, label_names=names))
    if label_maps:
        logger.info("%s: %d label map(s) left out of the CTs (%s)", path, len(label_maps), ", ".join(label_maps[:5]))
    others = [e.name for e in sorted(path.iterdir())
              if e.is_file() and e.name.lower().endswith(_OTHER_VOLUMES) and not is_label_map_name(e.name)]
    if others:  # read when named alone or in a datalist, but a folder is scanned for NIfTI and DICOM only
        logger.warning("%s: %d volume(s) of other formats left out (%s); list them in a datalist.json there, or "
                       "convert them to NIfTI", path, len(others), ", ".join(others[:5]))
    if not cases:
        raise CTInputError(f"{path}: no CT found (looked for {DATALIST}, *.nii, *.nii.gz and DICOM series folders); "
                           f"add CTs there or create samples with `python -m unimiss_monai samples --out DIR`")
    return _refuse_duplicate_names(cases)


def read_label_names(path: str | Path | None) -> dict[int, str]:
    """Label value -> name from a ``structures.csv``-style CSV or a ``{"<value>": "<name>"}`` JSON; {} for None."""
    if path is None:
        return {}
    path = Path(path)
    if path.suffix.lower() == ".json":
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    return read_structure_names(path)
