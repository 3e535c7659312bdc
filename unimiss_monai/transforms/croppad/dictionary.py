"""Dictionary wrappers of :mod:`unimiss_monai.transforms.croppad.array`: one random draw per call, applied to every
key (so views stored under several keys, e.g. image and mask, stay aligned)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple

from unimiss_monai.transforms.croppad.array import AxialSliceSampler, RandResizedCrop, RandScaledCrop

__all__ = [
    "AxialSliceSamplerD",
    "AxialSliceSamplerDict",
    "AxialSliceSamplerd",
    "RandResizedCropD",
    "RandResizedCropDict",
    "RandResizedCropd",
    "RandScaledCropD",
    "RandScaledCropDict",
    "RandScaledCropd",
]


class _SharedDrawd(Randomizable, MapTransform):
    """Randomise the wrapped array transform once from the first key's shape, then apply it to all keys."""

    backend: list = []

    def __init__(self, keys: KeysCollection, transform, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = transform

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        raise NotImplementedError  # the draw needs the image shape; it happens in __call__

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        first = True
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=first)
            first = False
        return d


class RandResizedCropd(_SharedDrawd):
    """Dictionary version of :class:`~unimiss_monai.transforms.RandResizedCrop` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        mode: str | None = None,
        pad_value: float | None = None,
        max_attempts: int = 10,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys, RandResizedCrop(spatial_size, scale, ratio, mode, pad_value, max_attempts), allow_missing_keys
        )


class RandScaledCropd(_SharedDrawd):
    """Dictionary version of :class:`~unimiss_monai.transforms.RandScaledCrop` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection,
        roi_size: Sequence[int],
        scale_range: tuple[float, float] | Sequence[tuple[float, float]] = (1.0, 1.0),
        resize: bool = True,
        mode: str | None = None,
        pad_value: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandScaledCrop(roi_size, scale_range, resize, mode, pad_value), allow_missing_keys)


class AxialSliceSamplerd(_SharedDrawd):
    """Dictionary version of :class:`~unimiss_monai.transforms.AxialSliceSampler`; the slice stack of ``key`` is
    written to ``output_keys`` (default ``f"{key}_slices"``), leaving the volume in place.

    Args:
        keys: volume keys ``(1, D, H, W)``.
        output_keys: destination keys, one per key. Defaults to ``"<key>_slices"``.
        stride, n_slices, channels: see :class:`~unimiss_monai.transforms.AxialSliceSampler`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_keys: KeysCollection | None = None,
        stride: int = 2,
        n_slices: int | None = None,
        channels: int = 3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, AxialSliceSampler(stride, n_slices, channels), allow_missing_keys)
        names = [f"{k}_slices" for k in self.keys] if output_keys is None else list(ensure_tuple(output_keys))
        if len(names) != len(self.keys):
            raise ValueError(f"output_keys {names} must match keys {list(self.keys)} one to one.")
        self.output_keys = dict(zip(self.keys, names))

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        first = True
        for key in self.key_iterator(d):
            d[self.output_keys[key]] = self.transform(d[key], randomize=first)
            first = False
        return d


RandResizedCropD = RandResizedCropDict = RandResizedCropd
RandScaledCropD = RandScaledCropDict = RandScaledCropd
AxialSliceSamplerD = AxialSliceSamplerDict = AxialSliceSamplerd
