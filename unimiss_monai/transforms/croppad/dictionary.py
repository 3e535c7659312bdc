"""Dictionary wrappers of :mod:`unimiss_monai.transforms.croppad.array`: one random draw per call, applied to every
key (so views stored under several keys, e.g. image and mask, stay aligned). ``mode`` is one interpolation for all
keys or one per key: give label keys ``"nearest"`` so masks stay binary, e.g.
``RandResizedCropd(("image", "label"), (96, 96), mode=("bilinear", "nearest"))``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple_rep

from unimiss_monai.transforms.croppad.array import RandResizedCrop, RandScaledCrop

__all__ = [
    "RandResizedCropD",
    "RandResizedCropDict",
    "RandResizedCropd",
    "RandScaledCropD",
    "RandScaledCropDict",
    "RandScaledCropd",
]


class _SharedDrawd(Randomizable, MapTransform):
    """Randomise the wrapped array transform once from the first key's shape, then apply it to all keys, each with its
    own interpolation ``mode`` (one value for all keys or one per key)."""

    backend: list = []

    def __init__(self, keys: KeysCollection, transform, allow_missing_keys: bool = False,
                 mode: Sequence[str | None] | str | None = None) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = transform
        self.mode = ensure_tuple_rep(mode, len(self.keys))

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        raise NotImplementedError  # the draw needs the image shape; it happens in __call__

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        first = True
        for key, mode in self.key_iterator(d, self.mode):
            self.transform.mode = mode
            d[key] = self.transform(d[key], randomize=first)
            first = False
        return d


class RandResizedCropd(_SharedDrawd):
    """Dictionary version of :class:`~unimiss_monai.transforms.RandResizedCrop` (same arguments after ``keys``).

    Args:
        mode: interpolation, one for all keys or one per key (``None``: bilinear 2D / trilinear 3D); pass
            ``"nearest"`` for label keys, e.g. ``mode=("bilinear", "nearest")`` for ``keys=("image", "label")``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        mode: Sequence[str | None] | str | None = None,
        pad_value: float | None = None,
        max_attempts: int = 10,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys, RandResizedCrop(spatial_size, scale, ratio, None, pad_value, max_attempts), allow_missing_keys, mode
        )


class RandScaledCropd(_SharedDrawd):
    """Dictionary version of :class:`~unimiss_monai.transforms.RandScaledCrop` (same arguments after ``keys``).

    Args:
        mode: interpolation, one for all keys or one per key (``None``: bilinear 2D / trilinear 3D); pass
            ``"nearest"`` for label keys, e.g. ``mode=("bilinear", "nearest")`` for ``keys=("image", "label")``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        roi_size: Sequence[int],
        scale_range: tuple[float, float] | Sequence[tuple[float, float]] = (1.0, 1.0),
        resize: bool = True,
        mode: Sequence[str | None] | str | None = None,
        pad_value: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys, RandScaledCrop(roi_size, scale_range, resize, None, pad_value), allow_missing_keys, mode
        )


RandResizedCropD = RandResizedCropDict = RandResizedCropd
RandScaledCropD = RandScaledCropDict = RandScaledCropd
