"""CT intensity scaling used by UniMiSS / UniMiSS+."""

from __future__ import annotations

from typing import Literal

import torch
from monai.config import NdarrayOrTensor
from monai.data import get_track_meta
from monai.transforms import ScaleIntensityRange, Transform
from monai.utils import convert_to_tensor

__all__ = ["ScaleCTIntensity"]


class ScaleCTIntensity(Transform):
    """Map CT Hounsfield units to network input values.

    - ``mode="hu1024"`` (UniMiSS / UniMiSS+ reference): ``x / 1024``, no clipping (air -1000 HU -> about -0.98).
    - ``mode="window"``: clip to ``[a_min, a_max]`` HU and rescale linearly to ``[b_min, b_max]``.

    Args:
        mode: ``"hu1024"`` or ``"window"``. Defaults to ``"hu1024"``.
        a_min: window lower bound in HU. Defaults to -1024.
        a_max: window upper bound in HU. Defaults to 1024.
        b_min: output value at ``a_min``. Defaults to 0.
        b_max: output value at ``a_max``. Defaults to 1.

    Examples::

        >>> ScaleCTIntensity()(torch.tensor([[[-1024.0, 0.0, 2048.0]]]))
        tensor([[[-1.,  0.,  2.]]])
        >>> ScaleCTIntensity("window", a_min=-160, a_max=240)(torch.tensor([[[-1000.0, 40.0, 400.0]]]))
        tensor([[[0.0000, 0.5000, 1.0000]]])
    """

    backend = ScaleIntensityRange.backend

    def __init__(
        self,
        mode: Literal["hu1024", "window"] = "hu1024",
        a_min: float = -1024.0,
        a_max: float = 1024.0,
        b_min: float = 0.0,
        b_max: float = 1.0,
    ) -> None:
        if mode not in ("hu1024", "window"):
            raise ValueError(f"mode must be 'hu1024' or 'window', got {mode!r}.")
        if mode == "window" and a_max <= a_min:
            raise ValueError(f"window needs a_max > a_min, got a_min={a_min}, a_max={a_max}.")
        self.mode = mode
        self.window = ScaleIntensityRange(a_min, a_max, b_min, b_max, clip=True, dtype=torch.float32)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """``img`` ``(C, *spatial)`` HU -> float32 tensor of the same shape (a MetaTensor keeps its metadata)."""
        t = convert_to_tensor(img, dtype=torch.float32, track_meta=get_track_meta())
        if self.mode == "hu1024":
            return t / 1024.0
        return self.window(t)
