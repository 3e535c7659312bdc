"""Dictionary wrappers of :mod:`unimiss_monai.transforms.utility.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform

from unimiss_monai.transforms.utility.array import CheckImage

__all__ = ["CheckImageD", "CheckImageDict", "CheckImaged"]


class CheckImaged(MapTransform):
    """Dictionary version of :class:`~unimiss_monai.transforms.CheckImage` (same arguments after ``keys``)."""

    def __init__(self, keys: KeysCollection, check_affine: bool = True, min_spacing: float = 1e-6,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckImage(check_affine, min_spacing)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.checker(d[key])
        return d


CheckImageD = CheckImageDict = CheckImaged
