"""TotalSegmentator structure names <-> label values, structure subsets, and the label contract of segmentation bundles.

TotalSegmentator label maps (``structures.csv``: columns ``structure``, ``id``) name ~100 structures and split some
organs (five lung lobes). A segmentation task picks a subset and may merge structures into one class; this module
turns such a choice into a lookup table from TotalSegmentator values to compact classes ``0..K`` (0 = background),
applied by :class:`SelectStructures` / :class:`SelectStructuresd` or by MONAI's ``MapLabelValued`` via
:func:`map_label_value_args`.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from unimiss_monai.data.ct_io import warn_if_not_ct_hu
from unimiss_monai.transforms.utility import CheckImage

__all__ = [
    "DEFAULT_STRUCTURES",
    "CheckSegmentationInputd",
    "SelectStructures",
    "SelectStructuresD",
    "SelectStructuresDict",
    "SelectStructuresd",
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


class SelectStructures(Transform):
    """Map a TotalSegmentator label map to compact classes: selected values to ``1..K``, every other value to 0.

    Args:
        table: TotalSegmentator value -> class (see :func:`structure_lookup`).
        max_value: largest value a valid label map may hold (e.g. the last id of ``structures.csv``); a larger or
            negative value raises, since it means the map follows another labelling. ``None`` skips the check.

    Examples::

        table, names = structure_lookup({"lung": LUNG_LOBES, "heart": ["heart"]})
        SelectStructures(table)(label)  # (1, X, Y, Z) with values in {0, 1, 2}
    """

    backend = [torch.Tensor.__name__, np.ndarray.__name__]

    def __init__(self, table: Mapping[int, int], max_value: int | None = None) -> None:
        if not table:
            raise ValueError("SelectStructures: empty table; build one with structure_lookup()")
        self.max_value = max_value
        size = max(max(table), max_value or 0) + 1
        self.lut = torch.zeros(size, dtype=torch.long)
        for src, dst in table.items():
            self.lut[int(src)] = int(dst)

    def __call__(self, label: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """label: (C, *spatial) integer-valued label map -> same shape, values in ``0..K``."""
        values = torch.as_tensor(label)
        idx = values.round().long()
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or (self.max_value is not None and high > self.max_value):
            raise ValueError(f"SelectStructures: label values span [{low}, {high}], outside 0..{self.max_value if self.max_value is not None else 'inf'} of the structures list; is this map labelled with another structures.csv?")
        # values past the table (other structures) are background
        mapped = torch.where(idx < len(self.lut), self.lut[idx.clamp(max=len(self.lut) - 1)], 0)
        if isinstance(label, np.ndarray):
            return mapped.numpy().astype(label.dtype)
        out = mapped.to(values.dtype)
        return label.clone().copy_(out) if hasattr(label, "meta") else out


class SelectStructuresd(MapTransform):
    """Dictionary wrapper of :class:`SelectStructures`; ``keys`` are label-map keys."""

    backend = SelectStructures.backend

    def __init__(self, keys: KeysCollection, table: Mapping[int, int], max_value: int | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.select = SelectStructures(table, max_value)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.select(d[key])
        return d


SelectStructuresD = SelectStructuresDict = SelectStructuresd


def _source(x) -> str:
    meta = getattr(x, "meta", None) or {}
    name = meta.get("filename_or_obj", "")
    return str(name) if name else "<in-memory image>"


class CheckSegmentationInputd(MapTransform):
    """Fail early, with the file name and the fix, on inputs a segmentation bundle cannot use.

    Runs after ``LoadImaged`` + ``EnsureChannelFirstd``. Checks: the image has ``spatial_dims`` spatial axes and
    ``in_channels`` channels, finite values and a non-degenerate grid (:class:`~unimiss_monai.transforms.CheckImage`); the label (if present) has one channel, the image's grid (shape and affine) and only
    integer values in ``0..num_classes - 1``.

    Args:
        keys: ``(image_key, label_key)``; a missing label key is skipped (inference).
        spatial_dims: 2 or 3.
        in_channels: expected image channels.
        num_classes: number of classes including background (label values ``0..num_classes - 1``).
        affine_atol: tolerance (mm) of the image/label affine comparison. Defaults to 1e-3.
    """

    def __init__(
        self, keys: KeysCollection = ("image", "label"), spatial_dims: int = 3, in_channels: int = 1, num_classes: int = 2, affine_atol: float = 1e-3
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        if len(self.keys) != 2:
            raise ValueError(f"CheckSegmentationInputd: keys must be (image_key, label_key), got {self.keys}")
        self.spatial_dims, self.in_channels, self.num_classes, self.affine_atol = spatial_dims, in_channels, num_classes, affine_atol

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> Mapping[Hashable, torch.Tensor]:
        image_key, label_key = self.keys
        image = data[image_key]
        src = _source(image)
        kind = "3D volumes" if self.spatial_dims == 3 else "2D images"
        if image.ndim - 1 != self.spatial_dims:
            raise ValueError(f"{src}: image has shape {tuple(image.shape[1:])} ({image.ndim - 1} spatial dims) but this bundle segments {kind}; give it a {self.spatial_dims}D image")
        if image.shape[0] != self.in_channels:
            raise ValueError(f"{src}: image has {image.shape[0]} channels, the network takes {self.in_channels}; give one {self.in_channels}-channel image per case")
        # non-finite voxels, a degenerate grid or a constant image: one failed case, never an all-background label
        CheckImage(fail_constant=True)(image)
        if self.spatial_dims == 3:
            warn_if_not_ct_hu(image, src, "its segmentation is unlikely to mean anything")
        if label_key not in data:
            return data
        label = data[label_key]
        lsrc = _source(label)
        if label.ndim != image.ndim or label.shape[0] != 1:
            raise ValueError(f"{lsrc}: label has shape {tuple(label.shape)}; expected one channel of spatial shape {tuple(image.shape[1:])} (a label map, not one-hot)")
        if tuple(label.shape[1:]) != tuple(image.shape[1:]):
            raise ValueError(f"{lsrc}: label grid {tuple(label.shape[1:])} differs from image grid {tuple(image.shape[1:])} ({src}); resample the label onto the image")
        a_img, a_lab = getattr(image, "affine", None), getattr(label, "affine", None)
        if a_img is not None and a_lab is not None and not torch.allclose(torch.as_tensor(a_img).double(), torch.as_tensor(a_lab).double(), atol=self.affine_atol):
            raise ValueError(f"{lsrc}: label affine differs from the image affine of {src}; the two are on different grids, resample the label onto the image")
        values = torch.unique(torch.as_tensor(label))
        bad = values[(values != values.round()) | (values < 0) | (values >= self.num_classes)]
        if bad.numel():
            raise ValueError(
                f"{lsrc}: label values {bad[:8].tolist()} are outside the declared classes 0..{self.num_classes - 1}; "
                "map them (e.g. unimiss_monai.data.SelectStructuresd for TotalSegmentator maps) or fix num_classes"
            )
        return data
