"""Multi-view augmentation recipes of UniMiSS / UniMiSS+ pretraining, as MONAI ``Compose`` pipelines over named keys
(``<key>_view0``, ``<key>_view1``, ...) so bundle configs only pass sizes and probabilities.

Reference: ``UniMiSSPlus/data_loader3D2D.py`` and ``data_loader2D.py`` of github.com/YtongXie/UniMiSS-code.
MONAI counterparts of the reference augmentations: brightness x U(0.75, 1.25) -> ``RandScaleIntensityd``; additive
brightness (reference: Gaussian, sigma 0.4) -> ``RandShiftIntensityd`` (uniform offsets); contrast around the mean
-> ``RandScaleIntensityFixedMeand(preserve_range=True)``; gamma with retained mean/std -> ``RandAdjustContrastd``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import (
    Compose,
    CopyItemsd,
    DeleteItemsd,
    EnsureTyped,
    Orientationd,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandShiftIntensityd,
    RepeatChanneld,
    ScaleIntensityd,
    ThresholdIntensityd,
    Transposed,
)

from unimiss_monai.conventions import CT_AXCODES, CT_AXIS_LABELS, CT_TO_NETWORK
from unimiss_monai.transforms.croppad.dictionary import RandResizedCropd, RandScaledCropd
from unimiss_monai.transforms.intensity.dictionary import ScaleCTIntensityd

__all__ = ["ct_views_pipeline", "drr_views_pipeline", "view_keys", "xray_views_pipeline"]


def view_keys(key: str, n_views: int = 2) -> list[str]:
    """Names of the views made from ``key``: ``[f"{key}_view0", ...]``."""
    return [f"{key}_view{i}" for i in range(n_views)]


def _per_view(value: float | Sequence[float], n_views: int, name: str) -> list[float]:
    values = [float(value)] * n_views if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != n_views:
        raise ValueError(f"{name} has {len(values)} entries for n_views={n_views}.")
    return values


def ct_views_pipeline(
    key: str = "ct",
    n_views: int = 2,
    roi_size: Sequence[int] = (16, 96, 96),
    region_scale: tuple[float, float] = (1.4, 1.8),
    view_scale: tuple[float, float] = (0.8, 1.2),
    flip_prob: float = 0.8,
    noise_std: float = 0.1,
    noise_prob: float = 1.0,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    blur_prob: float | Sequence[float] = 0.8,
    brightness_factor: float = 0.25,
    brightness_prob: float | Sequence[float] = (0.8, 1.0),
    shift_offset: float = 0.4,
    shift_prob: float | Sequence[float] = (0.8, 0.5),
    contrast_factor: float = 0.25,
    contrast_prob: float = 1.0,
    gamma: tuple[float, float] = (0.7, 1.5),
    gamma_prob: float | Sequence[float] = (0.8, 1.0),
    intensity_mode: str = "hu1024",
    window: tuple[float, float] = (-1024.0, 1024.0),
    depth_last_input: bool = True,
    keep_source: bool = False,
) -> Compose:
    """Two (or ``n_views``) augmented global views of one CT: ``key`` ``(1, X, Y, Z)`` HU ->
    ``<key>_view{i}`` ``(1, *roi_size)`` float32 in the networks' ``(Z, X, Y)`` order.

    Steps: reorientation to :data:`~unimiss_monai.conventions.CT_AXCODES` and transposition to ``(C, Z, X, Y)``
    (``depth_last_input``: a CT as MONAI loads it, with its affine; the fine-tuning bundles do the same, see
    :mod:`unimiss_monai.conventions`), HU scaling
    (:class:`~unimiss_monai.transforms.ScaleCTIntensity`), a region crop of all slices and
    ``roi_size[1:] x U(region_scale)`` in-plane, then per view: a crop of ``roi_size[0]`` slices and
    ``roi_size[1:] x U(view_scale)`` in-plane resized to ``roi_size``, a flip per axis with ``flip_prob``, Gaussian
    noise, Gaussian blur, multiplicative and additive brightness, contrast and gamma. A CT smaller than a crop is
    padded with its minimum (air). Per-view probabilities accept one value or one per view (reference: view 0/1 differ).

    The axial slices the 2D branch also sees are cut from the collated batch on the device by
    :class:`~unimiss_monai.engines.pretraining.PretrainingTrainer` (``slice_stride``), not here.

    Args:
        key: input key holding the CT in HU.
        n_views: number of global views. Defaults to 2.
        roi_size: view size ``(D, H, W)``. Defaults to ``(16, 96, 96)``.
        depth_last_input: the input is a loaded ``(C, X, Y, Z)`` CT with its affine (False: already in network order).
            Defaults to True.
        intensity_mode: ``"hu1024"`` or ``"window"`` (then ``window`` = ``(a_min, a_max)`` HU mapped to [0, 1]).
        keep_source: keep ``key`` (the region crop) in the output. Defaults to False.
        other args: augmentation ranges and probabilities as named.
    """
    views = view_keys(key, n_views)
    probs = {
        name: _per_view(v, n_views, name)
        for name, v in (("blur_prob", blur_prob), ("brightness_prob", brightness_prob), ("shift_prob", shift_prob),
                        ("gamma_prob", gamma_prob))
    }
    region = [-1, int(roi_size[1]), int(roi_size[2])]
    # the same anatomy-to-tensor mapping as fine-tuning, so a pretrained 3D encoder meets its anatomy the same way
    pre = [Orientationd(key, axcodes=CT_AXCODES, labels=CT_AXIS_LABELS)] if depth_last_input else []
    # views are new images (crops, flips, resizes): drop the MetaTensor affine bookkeeping, it only costs time
    pre.append(EnsureTyped(key, data_type="tensor", dtype=torch.float32, track_meta=False))
    if depth_last_input:
        pre.append(Transposed(key, CT_TO_NETWORK))
    pre += [
        ScaleCTIntensityd(key, mode=intensity_mode, a_min=window[0], a_max=window[1]),  # type: ignore[arg-type]
        RandScaledCropd(key, region, scale_range=[(1.0, 1.0), region_scale, region_scale], resize=False),
        CopyItemsd(key, times=n_views, names=views),
    ]
    per_view = []
    for i, v in enumerate(views):
        per_view += [
            RandScaledCropd(v, roi_size, scale_range=[(1.0, 1.0), view_scale, view_scale], resize=True),
            *(RandFlipd(v, prob=flip_prob, spatial_axis=axis) for axis in range(3)),
            RandGaussianNoised(v, prob=noise_prob, std=noise_std),
            RandGaussianSmoothd(v, sigma_x=blur_sigma, sigma_y=blur_sigma, sigma_z=blur_sigma, prob=probs["blur_prob"][i]),
            RandScaleIntensityd(v, factors=brightness_factor, prob=probs["brightness_prob"][i]),
            RandShiftIntensityd(v, offsets=shift_offset, prob=probs["shift_prob"][i]),
            RandScaleIntensityFixedMeand(v, factors=contrast_factor, preserve_range=True, prob=contrast_prob),
            RandAdjustContrastd(v, gamma=gamma, retain_stats=True, prob=probs["gamma_prob"][i]),
        ]
    post = [] if keep_source else [DeleteItemsd(key)]
    return Compose(pre + per_view + post)


def xray_views_pipeline(
    key: str = "xray",
    n_views: int = 2,
    spatial_size: Sequence[int] | int = 224,
    scale: tuple[float, float] = (0.14, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
    brightness_factor: float = 0.4,
    contrast_factor: float = 0.4,
    jitter_prob: float = 0.8,
    gamma: tuple[float, float] = (0.7, 1.5),
    gamma_prob: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    blur_prob: float | Sequence[float] = (0.5, 1.0),
    channels: int = 3,
    rescale_input: bool = True,
    keep_source: bool = False,
) -> Compose:
    """Augmented views of a grey 2D image (X-ray or DRR): ``key`` ``(1, X, Y)`` (columns, rows: the package's 2D
    layout, :mod:`unimiss_monai.conventions`) -> ``<key>_view{i}`` ``(channels, *spatial_size)`` float32 in [0, 1].

    Steps: min-max rescale to [0, 1] (``rescale_input``), then per view a random resized crop (area ``scale``,
    aspect ``ratio``), horizontal flip, grey colour jitter (brightness, contrast, each with ``jitter_prob``; gamma),
    Gaussian blur (reference: p=0.5 for view 0, 1.0 for view 1), clipping to [0, 1] and grey repeated to
    ``channels``. Reference scales: X-ray ``(0.14, 1)``, DRR ``(0.3, 1)`` (see :func:`drr_views_pipeline`).
    """
    views = view_keys(key, n_views)
    blur_probs = _per_view(blur_prob, n_views, "blur_prob")
    size = [int(spatial_size)] * 2 if isinstance(spatial_size, int) else [int(s) for s in spatial_size]
    pre = [EnsureTyped(key, data_type="tensor", dtype=torch.float32, track_meta=False)]
    if rescale_input:
        pre.append(ScaleIntensityd(key, minv=0.0, maxv=1.0))
    pre.append(CopyItemsd(key, times=n_views, names=views))
    per_view = []
    for i, v in enumerate(views):
        per_view += [
            RandResizedCropd(v, size, scale=scale, ratio=ratio),
            RandFlipd(v, prob=flip_prob, spatial_axis=0),  # axis 0 is X, the columns: a horizontal flip
            RandScaleIntensityd(v, factors=brightness_factor, prob=jitter_prob),
            RandScaleIntensityFixedMeand(v, factors=contrast_factor, prob=jitter_prob),
            RandAdjustContrastd(v, gamma=gamma, prob=gamma_prob),
            RandGaussianSmoothd(v, sigma_x=blur_sigma, sigma_y=blur_sigma, prob=blur_probs[i]),
            ThresholdIntensityd(v, threshold=0.0, above=True, cval=0.0),
            ThresholdIntensityd(v, threshold=1.0, above=False, cval=1.0),
        ]
        if channels > 1:
            per_view.append(RepeatChanneld(v, repeats=channels))
    post = [] if keep_source else [DeleteItemsd(key)]
    return Compose(pre + per_view + post)


def drr_views_pipeline(key: str = "drr", scale: tuple[float, float] = (0.3, 1.0), **kwargs) -> Compose:
    """:func:`xray_views_pipeline` with the DRR crop scale ``(0.3, 1)`` of the UniMiSS+ reference."""
    return xray_views_pipeline(key=key, scale=scale, **kwargs)
