"""Random crops for multi-view self-supervision that MONAI lacks: area-scale/aspect-ratio resized crops (2D, and the
in-plane 3D variant), per-axis size-jittered crops (the UniMiSS CT crops) and an axial slice sampler."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import RandomizableTransform, Resize, SpatialPad
from monai.utils import convert_to_tensor, ensure_tuple

from unimiss_monai.utils.args import as_bool

__all__ = ["RandResizedCrop", "RandScaledCrop", "pad_to_at_least"]


def pad_to_at_least(img: torch.Tensor, size: Sequence[int], pad_value: float | None = None) -> torch.Tensor:
    """Pad channel-first ``img`` ``(C, *spatial)`` symmetrically so every axis is at least ``size`` (``-1`` or ``0``
    = no minimum), with ``pad_value`` (``None``: the image minimum, i.e. air / background)."""
    target = [max(int(s), d) for s, d in zip(size, img.shape[1:])]
    if target == list(img.shape[1:]):
        return img
    value = float(img.min()) if pad_value is None else pad_value
    return SpatialPad(target, mode="constant", value=value)(img)


def _crop(img: torch.Tensor, start: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    return img[(slice(None), *(slice(s, s + n) for s, n in zip(start, size)))]


def _resize(img: torch.Tensor, spatial_size: Sequence[int], mode: str | None) -> torch.Tensor:
    ndim = img.ndim - 1
    mode = mode or ("bilinear" if ndim == 2 else "trilinear")
    if list(img.shape[1:]) == [s if s > 0 else d for s, d in zip(spatial_size, img.shape[1:])]:
        return img
    align = None if mode in ("area", "nearest", "nearest-exact") else False
    return Resize(spatial_size, mode=mode, align_corners=align)(img)


class RandResizedCrop(RandomizableTransform):
    """Crop a random region covering a fraction ``scale`` of the image area with aspect ratio in ``ratio``, then
    resize it to ``spatial_size`` (the Inception / DINO crop).

    2D input ``(C, H, W)``: the region is sampled over ``(H, W)``. 3D input ``(C, D, H, W)``: the area rule applies
    in-plane over ``(H, W)`` and the depth is a random window of ``spatial_size[0]`` slices (``-1``: all slices).
    Inputs smaller than the depth window are padded. After ``max_attempts`` rejected draws it falls back to the
    largest centred region whose aspect ratio is within ``ratio``.

    Args:
        spatial_size: output size ``(H, W)`` or ``(D, H, W)``; ``-1`` keeps the depth.
        scale: range of the in-plane area fraction. Defaults to ``(0.08, 1.0)``; X-ray ``(0.14, 1)``, DRR ``(0.3, 1)``.
        ratio: range of the crop's extent along the last spatial axis over its extent along the one before (width /
            height when the axes are ``(H, W)``; for the package's radiographs, ``(C, X, Y)``, that is Y / X),
            sampled log-uniformly. Defaults to ``(3/4, 4/3)``: symmetric in log, so the order of the axes does not
            change which crops are drawn.
        mode: interpolation for the resize; ``None`` = bilinear (2D) / trilinear (3D).
        pad_value: padding value when the image is smaller than the depth window; ``None`` = image minimum.
        max_attempts: draws before the centred fallback. Defaults to 10.
    """

    def __init__(
        self,
        spatial_size: Sequence[int] | int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        mode: str | None = None,
        pad_value: float | None = None,
        max_attempts: int = 10,
    ) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        self.spatial_size = [int(s) for s in ensure_tuple(spatial_size)]
        if len(self.spatial_size) not in (2, 3):
            raise ValueError(f"spatial_size must have 2 or 3 entries, got {spatial_size}.")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}.")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}.")
        self.scale, self.ratio = scale, ratio
        self.mode, self.pad_value, self.max_attempts = mode, pad_value, max_attempts
        self._start: list[int] = []
        self._size: list[int] = []

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the crop box for an image of ``spatial_shape`` (after padding)."""
        h, w = spatial_shape[-2:]
        box = self._draw_in_plane(h, w)
        if len(spatial_shape) == 3:
            depth = spatial_shape[0]
            d = depth if self.spatial_size[0] <= 0 else min(self.spatial_size[0], depth)
            d0 = int(self.R.randint(0, depth - d + 1))
            box = ([d0, *box[0]], [d, *box[1]])
        self._start, self._size = box

    def _draw_in_plane(self, h: int, w: int) -> tuple[list[int], list[int]]:
        area = h * w
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(self.max_attempts):
            target = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(log_lo, log_hi))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                return [int(self.R.randint(0, h - ch + 1)), int(self.R.randint(0, w - cw + 1))], [ch, cw]
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, round(w / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            ch, cw = h, round(h * self.ratio[1])
        else:
            ch, cw = h, w
        return [(h - ch) // 2, (w - cw) // 2], [ch, cw]

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> torch.Tensor:
        """``img`` ``(C, H, W)`` or ``(C, D, H, W)`` -> ``(C, *spatial_size)``."""
        t = convert_to_tensor(img, track_meta=False)
        if t.ndim - 1 != len(self.spatial_size):
            raise ValueError(f"image has {t.ndim - 1} spatial dims but spatial_size is {self.spatial_size}.")
        if t.ndim == 4:
            t = pad_to_at_least(t, (self.spatial_size[0], 0, 0), self.pad_value)
        if randomize:
            self.randomize(t.shape[1:])
        return _resize(_crop(t, self._start, self._size), self.spatial_size, self.mode)


class RandScaledCrop(RandomizableTransform):
    """Random crop whose size along axis ``i`` is ``roi_size[i] * U(scale_range[i])`` (clamped to the image), optionally
    resized back to ``roi_size``: the UniMiSS CT crops (region crop in-plane x1.4-1.8 without resize, then global
    crops of ``(16, 96, 96)`` with in-plane x0.8-1.2 jitter, resized).

    Images smaller than ``roi_size`` are padded first, so small CTs never fail.

    Args:
        roi_size: base crop size per spatial axis; ``-1`` = the whole axis.
        scale_range: one ``(min, max)`` for all axes or one per axis. Defaults to ``(1.0, 1.0)``.
        resize: resize the crop to ``roi_size`` (``-1`` axes keep their size). Defaults to True.
        mode: interpolation; ``None`` = bilinear (2D) / trilinear (3D).
        pad_value: padding value; ``None`` = image minimum.
    """

    def __init__(
        self,
        roi_size: Sequence[int],
        scale_range: tuple[float, float] | Sequence[tuple[float, float]] = (1.0, 1.0),
        resize: bool = True,
        mode: str | None = None,
        pad_value: float | None = None,
    ) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        self.roi_size = [int(s) for s in roi_size]
        ranges = [scale_range] * len(self.roi_size) if np.ndim(scale_range) == 1 else list(scale_range)
        if len(ranges) != len(self.roi_size):
            raise ValueError(f"scale_range has {len(ranges)} entries for {len(self.roi_size)} axes.")
        for lo, hi in ranges:
            if not 0 < lo <= hi:
                raise ValueError(f"each scale range must satisfy 0 < min <= max, got {scale_range}.")
        self.scale_range = [tuple(map(float, r)) for r in ranges]
        self.resize, self.mode, self.pad_value = as_bool(resize, "resize"), mode, pad_value  # "false" from the command line
        self._start: list[int] = []
        self._size: list[int] = []

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        self._start, self._size = [], []
        for base, (lo, hi), dim in zip(self.roi_size, self.scale_range, spatial_shape):
            size = dim if base <= 0 else min(dim, max(1, int(base * self.R.uniform(lo, hi))))
            self._size.append(size)
            self._start.append(int(self.R.randint(0, dim - size + 1)))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> torch.Tensor:
        """``img`` ``(C, *spatial)`` -> ``(C, *roi_size)`` when ``resize`` else the jittered crop size."""
        t = convert_to_tensor(img, track_meta=False)
        if t.ndim - 1 != len(self.roi_size):
            raise ValueError(f"image has {t.ndim - 1} spatial dims but roi_size is {self.roi_size}.")
        t = pad_to_at_least(t, self.roi_size, self.pad_value)
        if randomize:
            self.randomize(t.shape[1:])
        out = _crop(t, self._start, self._size)
        return _resize(out, self.roi_size, self.mode) if self.resize else out
