"""Functional DRR renderer: ``render(volume, affine, views, ...)`` -> ``(V, H, W)`` or ``(B, V, H, W)`` images.

CPU numpy volumes go through compiled numba kernels; torch tensors on another device or requiring grad go through the
pure-PyTorch reference path (:mod:`.torch_ops`), which computes the same integrals.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from unimiss_monai.drr.attenuation import MU_WATER_70KEV, beer_lambert
from unimiss_monai.drr.geometry import ConeBeam, Pose, as_pose
from unimiss_monai.drr.volume import PreparedVolume, prepare_volume, volume_affine

__all__ = ["METHODS", "OUTPUTS", "render", "project", "rays_in_kernel_order", "as_poses", "check_memory"]

METHODS = ("siddon", "trilinear")
OUTPUTS = ("line_integral", "intensity")
ViewLike = str | Pose | Mapping


def as_poses(views: ViewLike | Sequence[ViewLike]) -> list[Pose]:
    """A list of poses from one view or a sequence of names / :class:`Pose` / pose dicts."""
    if isinstance(views, (str, Pose, Mapping)):
        views = [views]
    poses = [as_pose(v) for v in views]
    if not poses:
        raise ValueError("views is empty: pass at least one view name or pose, e.g. views=('AP',)")
    return poses


def _available_bytes() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_memory(n_images: int, detector_shape: tuple[int, int], channels: int = 1, limit_bytes: int | None = None):
    """Raise ValueError when the output and per-view ray buffers would not fit in memory."""
    h, w = detector_shape
    need = n_images * channels * h * w * 4 + h * w * 40
    limit = _available_bytes() if limit_bytes is None else limit_bytes
    if need > limit:
        raise ValueError(
            f"DRR detector {h}x{w} x {n_images} image(s) x {channels} channel(s) needs ~{need / 2**30:.2f} GiB, more "
            f"than the {limit / 2**30:.2f} GiB available; use a smaller detector_shape or fewer views per call"
        )


def rays_in_kernel_order(tgt: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Order the ``(H, W)`` ray grid (detector points ``tgt`` ``(H, W, 3)`` in memory-order voxel coordinates, ray
    lengths ``(H, W)``) so the inner loop walks the volume's contiguous axis; returns (tgt, lengths, transposed)."""
    step_col = abs(tgt[0, min(1, tgt.shape[1] - 1), 2] - tgt[0, 0, 2])
    step_row = abs(tgt[min(1, tgt.shape[0] - 1), 0, 2] - tgt[0, 0, 2])
    if step_row > step_col:
        return np.ascontiguousarray(tgt.transpose(1, 0, 2)), np.ascontiguousarray(lengths.T), True
    return np.ascontiguousarray(tgt), np.ascontiguousarray(lengths), False


def _as_tensor(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A prepared volume's values as a tensor, sharing their memory. ``prepare_volume`` makes its arrays read-only
    (their block map describes them); the PyTorch path only reads them, so torch's warning that it cannot mark a
    tensor read-only does not apply here."""
    if isinstance(values, torch.Tensor):
        return values
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(values)


def _project_numba(prep: PreparedVolume, geometry: ConeBeam, poses: list[Pose], method: str, isocenter) -> np.ndarray:
    from unimiss_monai.drr.empty_space import BLOCK, block_grid, no_skipping
    from unimiss_monai.drr.kernels import SIDDON, TRILINEAR, view_kernel
    from unimiss_monai.drr.layout import frame_in_memory_order, loop_order, memory_layout

    code = SIDDON if method == "siddon" else TRILINEAR
    # the kernels walk the volume as it lies in memory (a NIfTI CT is x-fastest): rays go into that axis order
    layout = memory_layout(prep.values)
    occ, block = no_skipping()
    if layout is None:  # a strided view handed in directly rather than through prepare_volume
        layout = memory_layout(np.ascontiguousarray(prep.values, dtype=np.float32))
    elif prep.occupancy is not None:
        if prep.occupancy.shape != block_grid(layout.array.shape):
            raise ValueError(
                f"PreparedVolume.occupancy has shape {prep.occupancy.shape}, not that of the block map of values in "
                f"memory order {tuple(layout.array.shape)}, {block_grid(layout.array.shape)}; use prepare_volume"
            )
        occ, block = prep.occupancy, BLOCK
    flat = layout.array.reshape(-1)
    shape = np.asarray(layout.array.shape, dtype=np.int64)
    out = np.empty((len(poses), *geometry.detector_shape), np.float32)
    for v, pose in enumerate(poses):
        frame, world = prep.detector_frame(geometry, pose, isocenter)
        frame = frame_in_memory_order(frame, layout)
        rows_inner, strip = loop_order(frame, geometry.detector_shape)  # rays that share cache lines walked together
        view_kernel(flat, shape, occ, block, frame, world, rows_inner, strip, code, out[v])
    return out


def _project_torch(prep: PreparedVolume, geometry: ConeBeam, poses: list[Pose], method: str, isocenter) -> torch.Tensor:
    from unimiss_monai.drr.torch_ops import siddon_torch, trilinear_torch

    vol = _as_tensor(prep.values)
    fn = siddon_torch if method == "siddon" else trilinear_torch
    dtype = torch.float32 if vol.device.type == "mps" else torch.float64
    images = []
    for pose in poses:
        src, tgt, lengths = prep.rays(geometry, pose, isocenter)
        as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=vol.device)  # noqa: E731
        img = fn(vol, as_t(src), as_t(tgt.reshape(-1, 3)), as_t(lengths.reshape(-1)))
        images.append(img.reshape(geometry.detector_shape).float())
    return torch.stack(images)


def project(
    prep: PreparedVolume, geometry: ConeBeam, poses: list[Pose], method: str = "siddon", isocenter=None,
    backend: str = "auto",
) -> torch.Tensor:
    """Line integrals ``(V, H, W)`` float32 of a prepared volume for several poses."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    use_torch = backend == "torch" or isinstance(prep.values, torch.Tensor)
    if use_torch:
        return _project_torch(prep, geometry, poses, method, isocenter)
    return torch.from_numpy(_project_numba(prep, geometry, poses, method, isocenter))


def render(
    volume,
    affine,
    views=("AP",),
    detector_shape=(256, 256),
    pixel_spacing=1.5625,
    sdd=1020.0,
    sid=850.0,
    method="siddon",
    output="line_integral",
    *,
    principal_point=(0.0, 0.0),
    isocenter=None,
    volume_unit: str = "hu",
    mu_water: float = MU_WATER_70KEV,
    bone_slope: float = 1.0,
    i0: float = 1.0,
    affine_space: str | None = None,
    device: str | torch.device | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Render cone-beam DRRs of a CT volume (see :mod:`unimiss_monai.drr.geometry` for the conventions).

    Args:
        volume: HU volume ``(X, Y, Z)`` in NIfTI voxel order, or a batch ``(B, X, Y, Z)``; numpy or torch; or a
            :class:`PreparedVolume` (or a list of them) from :func:`prepare_volume` to skip the per-call conversion.
        affine: 4x4 voxel-to-world matrix (``(B, 4, 4)`` for a batch with different affines); None for prepared
            volumes or a MetaTensor (its ``.affine`` is used).
        views: one or more view names (``"AP"``, ``"PA"``, ``"LAT_LEFT"``/``"LL"``, ``"LAT_RIGHT"``/``"RL"``),
            :class:`Pose` objects or dicts ``{"view", "rotation", "translation"}``.
        detector_shape: ``(H, W)`` pixels (an int for square).
        pixel_spacing: detector pixel size in mm, scalar or ``(row, col)``.
        sdd: source-to-detector distance, mm.
        sid: source-to-isocentre distance, mm.
        method: ``"siddon"`` (exact voxel walk) or ``"trilinear"`` (plane-sampled trilinear marching).
        output: ``"line_integral"`` (sum of mu x length) or ``"intensity"`` (``i0 * exp(-line_integral)``).
        principal_point: ``(row, col)`` offset (mm) of the central ray's hit point from the detector centre.
        isocenter: world point (mm) the C-arm rotates about; the volume centre when None.
        volume_unit: ``"hu"`` or ``"mu"`` (values already attenuation per mm).
        mu_water, bone_slope: HU -> attenuation model (:func:`unimiss_monai.drr.hu_to_mu`).
        i0: unattenuated intensity for ``output="intensity"``.
        affine_space: ``"RAS"`` (NIfTI) or ``"LPS"`` (DICOM/ITK) world of ``affine``; None: a MetaTensor's own
            affine in the space of its ``meta["space"]``, any other affine as RAS.
        device: ``"cpu"`` (compiled kernels), ``"cuda"`` (PyTorch path); None: where the volume is.
        backend: ``"auto"``, ``"numba"`` or ``"torch"`` (force the reference path).

    Returns:
        float32 tensor ``(V, H, W)``, or ``(B, V, H, W)`` for a batched volume; on ``device``.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    geometry = ConeBeam(detector_shape, pixel_spacing, sdd, sid, principal_point)
    poses = as_poses(views)
    prepared, batched = _prepare_all(volume, affine, volume_unit, mu_water, bone_slope, affine_space, device, backend)
    check_memory(len(prepared) * len(poses), geometry.detector_shape)
    images = [project(p, geometry, poses, method, isocenter, backend) for p in prepared]
    out = torch.stack(images) if batched else images[0]
    if device is not None:
        out = out.to(device)
    return beer_lambert(out, i0) if output == "intensity" else out


def _prepare_all(volume, affine, volume_unit, mu_water, bone_slope, affine_space, device, backend):
    """Prepared volumes and whether the input was a batch."""
    if isinstance(volume, PreparedVolume):
        return [volume], False
    if isinstance(volume, (list, tuple)) and volume and all(isinstance(v, PreparedVolume) for v in volume):
        return list(volume), True
    if affine is None and hasattr(volume, "affine"):
        affine, affine_space = volume_affine(volume, None, affine_space), "RAS"
    if not hasattr(volume, "ndim") or volume.ndim not in (3, 4):
        raise ValueError(
            f"volume must be (X, Y, Z) or (B, X, Y, Z), got shape {tuple(getattr(volume, 'shape', ()))}"
        )
    if backend == "torch" and not isinstance(volume, torch.Tensor):
        volume = torch.as_tensor(np.asarray(volume))
        device = device or "cpu"
    kw = dict(volume_unit=volume_unit, mu_water=mu_water, bone_slope=bone_slope, affine_space=affine_space)
    if backend == "torch" and isinstance(volume, torch.Tensor) and device is None:
        device = volume.device
    prep = lambda v, a: prepare_volume(v, a, device=device, **kw) if backend != "torch" else _prepare_torch(v, a, device, kw)  # noqa: E731
    if volume.ndim == 3:
        return [prep(volume, affine)], False
    aff = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
    if aff.ndim == 3 and len(aff) != len(volume):
        raise ValueError(f"got {len(aff)} affines for a batch of {len(volume)} volumes")
    return [prep(volume[b], aff[b] if aff.ndim == 3 else aff) for b in range(len(volume))], True


def _prepare_torch(volume, affine, device, kw) -> PreparedVolume:
    """Prepared volume kept as a torch tensor (reference path) even on the CPU."""
    prep = prepare_volume(volume, affine, device=device, **kw)
    if not isinstance(prep.values, torch.Tensor):
        prep = PreparedVolume(_as_tensor(prep.values).to(device or "cpu"), prep.affine)
    return prep


