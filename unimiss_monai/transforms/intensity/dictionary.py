"""Dictionary wrappers of :mod:`unimiss_monai.transforms.intensity.array`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Literal

from monai.config import KeysCollection
from monai.transforms import MapTransform

from unimiss_monai.transforms.intensity.array import ScaleCTIntensity

__all__ = ["ScaleCTIntensityD", "ScaleCTIntensityDict", "ScaleCTIntensityd"]


class ScaleCTIntensityd(MapTransform):
    """Dictionary version of :class:`~unimiss_monai.transforms.ScaleCTIntensity` (same arguments after ``keys``)."""

    backend = ScaleCTIntensity.backend

    def __init__(
        self,
        keys: KeysCollection,
        mode: Literal["hu1024", "window"] = "hu1024",
        a_min: float = -1024.0,
        a_max: float = 1024.0,
        b_min: float = 0.0,
        b_max: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleCTIntensity(mode, a_min, a_max, b_min, b_max)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d


ScaleCTIntensityD = ScaleCTIntensityDict = ScaleCTIntensityd
