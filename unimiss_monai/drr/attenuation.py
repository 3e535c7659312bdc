"""Hounsfield units to linear attenuation, Beer-Lambert intensity, and display windowing of DRRs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["MU_WATER_70KEV", "hu_to_mu", "beer_lambert", "to_radiograph"]

# water at 70 keV: mass attenuation ~0.193 cm^2/g (NIST XCOM), density 1 g/cm^3 -> 0.0193 per mm
MU_WATER_70KEV = 0.0193


def hu_to_mu(hu, mu_water: float = MU_WATER_70KEV, bone_slope: float = 1.0):
    """Bilinear HU -> attenuation (1/mm): ``mu_water * (1 + HU/1000)`` up to 0 HU, ``mu_water * (1 + bone_slope *
    HU/1000)`` above, clamped at 0.

    ``bone_slope=1`` is exact when the CT and the radiograph share an effective energy; values above 1 mimic a softer
    beam, where bone attenuates relatively more. Works on numpy arrays and torch tensors (keeps autograd).
    """
    if isinstance(hu, torch.Tensor):
        hu = hu.float() if not hu.is_floating_point() else hu
        scaled = torch.where(hu > 0, hu * bone_slope, hu)
        return torch.clamp(mu_water * (1.0 + scaled / 1000.0), min=0.0)
    hu = np.asarray(hu, dtype=np.float32)
    scaled = np.where(hu > 0, hu * np.float32(bone_slope), hu)
    return np.maximum(np.float32(mu_water) * (1.0 + scaled / np.float32(1000.0)), 0.0).astype(np.float32)


def beer_lambert(line_integral: torch.Tensor, i0: float = 1.0) -> torch.Tensor:
    """Detected intensity ``I0 * exp(-integral)`` of a line-integral image."""
    return i0 * torch.exp(-line_integral)


def to_radiograph(
    line_integral,
    bits: int = 8,
    window: Sequence[float] | None = None,
    percentiles: Sequence[float] = (0.5, 99.5),
    gamma: float = 1.0,
) -> np.ndarray:
    """A radiograph-looking integer image (bone bright, air dark) from a line-integral DRR, for PNG/viewing.

    Args:
        line_integral: ``(..., H, W)`` line integrals of mu (unitless), numpy or torch.
        bits: 8 (``uint8``) or 16 (``uint16``).
        window: ``(low, high)`` line-integral values mapped to black and white, ``low < high``. Defaults to the
            ``percentiles`` of each image, so every image uses its full range.
        percentiles: percentiles used when ``window`` is None.
        gamma: display gamma applied after windowing (``< 1`` brightens soft tissue).

    Raises:
        ValueError: for NaN or Inf line integrals (they have no grey level) or a window with ``low >= high``.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    img = line_integral.detach().cpu().numpy() if isinstance(line_integral, torch.Tensor) else np.asarray(line_integral)
    img = img.astype(np.float64)
    if not np.isfinite(img).all():  # NaN would turn the percentile window, and so the whole image, into noise
        raise ValueError(f"to_radiograph: {int((~np.isfinite(img)).sum())} NaN or Inf line integral(s) of {img.size}")
    if window is not None and not float(window[0]) < float(window[1]):
        raise ValueError(f"to_radiograph: window must be (low, high) with low < high, got {tuple(window)}")
    if window is None:
        flat = img.reshape(-1, *img.shape[-2:]).reshape(-1, img.shape[-2] * img.shape[-1]) if img.ndim > 2 else img.reshape(1, -1)
        lo, hi = np.percentile(flat, percentiles, axis=-1)
        shape = img.shape[:-2] + (1, 1)
        lo, hi = lo.reshape(shape), hi.reshape(shape)
    else:
        lo, hi = float(window[0]), float(window[1])
    scaled = np.clip((img - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0) ** gamma
    top = (1 << bits) - 1
    return np.round(scaled * top).astype(np.uint8 if bits == 8 else np.uint16)
