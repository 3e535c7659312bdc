"""TotalSegmentator structure names <-> label values, structure subsets, and the label contract of segmentation bundles.

TotalSegmentator label maps (``structures.csv``: columns ``structure``, ``id``) name ~100 structures and split some
organs (five lung lobes). A segmentation task picks a subset and may merge structures into one class; this module
turns such a choice into a lookup table from TotalSegmentator values to compact classes ``0..K`` (0 = background),
applied by :class:`~unimiss_monai.transforms.SelectStructuresd` or by MONAI's ``MapLabelValued`` via
:func:`map_label_value_args`. The input contract of the segmentation bundles is
:class:`~unimiss_monai.transforms.CheckSegmentationInputd`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from unimiss_monai.utils.lazy import moved_names

__all__ = [
    "DEFAULT_STRUCTURES",
    "LUNG_LOBES",
    "map_label_value_args",
    "read_totalsegmentator_structures",
    "structure_lookup",
]

LUNG_LOBES = (
    "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
    "lung_lower_lobe_right",
)
# class name -> TotalSegmentator structures merged into it. All nine are present in the sample chest CT (it reaches
# from the kidneys to the lung apices); the gallbladder, bowel and bladder are not, so they are left out.
DEFAULT_STRUCTURES: dict[str, tuple[str, ...]] = {
    "liver": ("liver",),
    "spleen": ("spleen",),
    "kidney_right": ("kidney_right",),
    "kidney_left": ("kidney_left",),
    "stomach": ("stomach",),
    "pancreas": ("pancreas",),
    "lung": LUNG_LOBES,
    "heart": ("heart",),
    "aorta": ("aorta",),
}


def read_totalsegmentator_structures(path: str | os.PathLike | None = None) -> dict[str, int]:
    """Structure name -> label value from a TotalSegmentator ``structures.csv``.

    Args:
        path: the CSV; ``None`` uses the one that ships with the sample chest CT.

    Raises:
        FileNotFoundError: ``path`` is ``None`` and the sample CT is not installed, or ``path`` does not exist.
    """
    from unimiss_monai.data.locators import INSTALL_HINT, find_real_ct, read_structure_names

    if path is None:
        real = find_real_ct()
        if real is None:
            raise FileNotFoundError(f"no structures.csv given and the sample CT is not installed; pass a path or `{INSTALL_HINT}`")
        path = real.structures
    if not Path(path).is_file():
        raise FileNotFoundError(f"structures file {str(path)!r} does not exist; pass the structures.csv of your label maps")
    return {name: value for value, name in read_structure_names(path).items()}


def structure_lookup(
    groups: Mapping[str, Sequence[str]] | Sequence[str] = DEFAULT_STRUCTURES,
    structures: Mapping[str, int] | str | os.PathLike | None = None,
) -> tuple[dict[int, int], list[str]]:
    """Lookup table TotalSegmentator value -> class ``1..K`` for a structure subset, and the class names.

    Args:
        groups: class name -> structures merged into it (e.g. ``{"lung": [five lobes]}``), or a list of structure
            names, one class each. Defaults to :data:`DEFAULT_STRUCTURES`.
        structures: name -> value mapping, or the path of a ``structures.csv`` (``None``: the sample CT's).

    Returns:
        ``(table, names)``: every selected value maps to its class, ``names[k - 1]`` names class ``k``.

    Raises:
        KeyError: a structure name is not in ``structures`` (the message lists close names).
    """
    if not isinstance(structures, Mapping):
        structures = read_totalsegmentator_structures(structures)
    if not isinstance(groups, Mapping):
        groups = {name: (name,) for name in groups}
    if not groups:
        raise ValueError("structure subset is empty; name at least one structure, e.g. {'liver': ['liver']}")
    table: dict[int, int] = {}
    for k, (name, members) in enumerate(groups.items(), start=1):
        for member in [members] if isinstance(members, str) else members:
            if member not in structures:
                close = sorted(s for s in structures if member.split("_")[0] in s)[:6]
                raise KeyError(f"structure {member!r} (class {name!r}) is not in the structures list; similar names: {close or sorted(structures)[:6]}")
            if structures[member] in table:
                raise ValueError(f"structure {member!r} is listed in two classes; give each structure one class")
            table[structures[member]] = k
    return table, list(groups)


def map_label_value_args(table: Mapping[int, int], structures: Mapping[str, int]) -> dict[str, list[int]]:
    """``orig_labels``/``target_labels`` for MONAI ``MapLabelValued``: every known value, unselected ones to 0."""
    values = sorted(set(structures.values()) | set(table))
    return {"orig_labels": values, "target_labels": [table.get(v, 0) for v in values]}


_LABELS = "unimiss_monai.transforms.labels"
# moved names keep working for one release, with a DeprecationWarning naming the new place
__getattr__ = moved_names(__name__, {
    "SelectStructures": _LABELS, "SelectStructuresd": _LABELS, "SelectStructuresD": _LABELS,
    "SelectStructuresDict": _LABELS, "CheckSegmentationInputd": _LABELS,
})
