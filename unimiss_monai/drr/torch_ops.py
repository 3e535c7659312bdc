"""Pure-PyTorch reference projectors (any device, differentiable in the volume), same maths as :mod:`.kernels`.

Rays are given in continuous voxel-index coordinates (voxel ``n`` spans ``[n - 0.5, n + 0.5]``): one source ``(3,)``,
pixel points ``(N, 3)`` and the world length (mm) of each source->pixel segment ``(N,)``. Rays are processed in chunks
so the temporary tensors stay within ``max_bytes``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["siddon_torch", "trilinear_torch"]


def _box_interval(src: torch.Tensor, d: torch.Tensor, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry/exit parameters ``(N,)`` of rays ``src + a * d`` with the box ``[-0.5, n - 0.5]``, clipped to [0, 1]."""
    safe = torch.where(d == 0, torch.full_like(d, 1e-30), d)
    t0 = (-0.5 - src) / safe
    t1 = (shape - 0.5 - src) / safe
    lo = torch.minimum(t0, t1)
    hi = torch.maximum(t0, t1)
    inside = (src >= -0.5) & (src <= shape - 0.5)
    lo = torch.where(d == 0, torch.where(inside, torch.full_like(lo, -1e30), torch.full_like(lo, 1e30)), lo)
    hi = torch.where(d == 0, torch.where(inside, torch.full_like(hi, 1e30), torch.full_like(hi, -1e30)), hi)
    return lo.amax(-1).clamp(min=0.0), hi.amin(-1).clamp(max=1.0)


def _chunks(n_rays: int, per_ray_bytes: int, max_bytes: int):
    size = max(1, min(n_rays, max_bytes // max(per_ray_bytes, 1)))
    for start in range(0, n_rays, size):
        yield slice(start, min(start + size, n_rays))


def _walk_index(
    alphas: torch.Tensor, s: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, mid: torch.Tensor, n: int
) -> torch.Tensor:
    """Voxel index ``(N, S)`` along one axis of each segment (midpoint parameter ``mid``), by ``kernels._siddon_ray``'s
    rule: the voxel ``floor(s + lo * d + 0.5)`` at the entry (``kernels._axis_start``), then one step per crossing of
    the planes ahead of it (``alphas`` ``(N, n + 1)``, the parameters of planes ``-0.5 .. n - 0.5``) before ``mid``.

    Counting crossings in parameter space, rather than rounding the midpoint's coordinate, attributes a ray that runs
    along a voxel face (to rounding, so that it crosses the plane somewhere, or never) to the same voxel as the walk.
    """
    i0 = torch.floor(s + lo * d + 0.5).long().clamp(0, n - 1)[:, None]
    neg = (d < 0)[:, None]
    # the planes' parameters in the order the ray meets them; none for a ray parallel to them
    seq = torch.where(neg, alphas.flip(1), alphas)
    seq = torch.where((d == 0)[:, None], torch.full_like(seq, float("inf")), seq)
    met = torch.searchsorted(seq.contiguous(), mid.contiguous())  # planes crossed before mid
    idx = torch.where(neg, torch.minimum(i0, n - met), torch.maximum(i0, met - 1))
    return idx.clamp(0, n - 1)


def siddon_torch(
    volume: torch.Tensor, src: torch.Tensor, tgts: torch.Tensor, lengths: torch.Tensor, max_bytes: int = 256 << 20
) -> torch.Tensor:
    """Exact Siddon line integrals ``(N,)``: every plane crossing of every axis, sorted, one voxel per segment."""
    shape_t = torch.tensor(volume.shape, dtype=src.dtype, device=src.device)
    flat = volume.reshape(-1)
    planes = [torch.arange(n + 1, dtype=src.dtype, device=src.device) - 0.5 for n in volume.shape]
    n_planes = sum(len(p) for p in planes)
    strides = (volume.shape[1] * volume.shape[2], volume.shape[2], 1)
    out = []
    for sl in _chunks(len(tgts), n_planes * 128, max_bytes):
        d = tgts[sl] - src
        lo, hi = _box_interval(src, d, shape_t)
        safe = torch.where(d == 0, torch.full_like(d, 1e-30), d)
        per_axis = [(planes[ax][None] - src[ax]) / safe[:, ax : ax + 1] for ax in range(3)]
        alphas = torch.cat(per_axis, dim=1)
        alphas = torch.sort(torch.minimum(torch.maximum(alphas, lo[:, None]), hi[:, None]), dim=1).values
        seg = (alphas[:, 1:] - alphas[:, :-1]).clamp(min=0.0)
        mid = 0.5 * (alphas[:, 1:] + alphas[:, :-1])
        flat_idx = sum(
            _walk_index(per_axis[ax], src[ax], d[:, ax], lo, mid, volume.shape[ax]) * strides[ax] for ax in range(3)
        )
        vals = flat[flat_idx].to(seg.dtype)
        out.append((seg * vals).sum(1) * lengths[sl])
    return torch.cat(out) if out else tgts.new_zeros(0)


def trilinear_torch(
    volume: torch.Tensor, src: torch.Tensor, tgts: torch.Tensor, lengths: torch.Tensor, max_bytes: int = 256 << 20
) -> torch.Tensor:
    """Plane-sampled trilinear line integrals ``(N,)`` (Joseph's method, zeros outside, see ``kernels._joseph_ray``)."""
    n = volume.shape
    shape_t = torch.tensor(n, dtype=src.dtype, device=src.device)
    # grid_sample (align_corners) maps [-1, 1] onto the voxel centres 0 .. n - 1, which for a size-1 axis is no
    # interval at all: give such an axis a zero voxel on either side (sample points shifted by one), so that the
    # interpolation falls off to zero over one voxel as in the kernel. Other axes need no padding: grid_sample's zero
    # padding is already the kernel's zero rim.
    pad = [1 if size == 1 else 0 for size in n]
    offset = torch.tensor(pad, dtype=src.dtype, device=src.device)
    scale = torch.tensor([size + 2 * p - 1 for size, p in zip(n, pad)], dtype=src.dtype, device=src.device)
    grid_vol = volume.to(torch.float32)[None, None]  # (1, 1, X, Y, Z): grid_sample's (x, y, z) order is (Z, Y, X)
    if any(pad):
        grid_vol = F.pad(grid_vol, (pad[2], pad[2], pad[1], pad[1], pad[0], pad[0]))
    out = []
    n_max = max(n)
    for sl in _chunks(len(tgts), n_max * 4 * 16, max_bytes):
        d = tgts[sl] - src
        main = d.abs().argmax(-1)  # (N,)
        dm = d.gather(1, main[:, None])[:, 0]
        sm = src[main]
        planes = torch.arange(n_max, dtype=src.dtype, device=src.device)[None]  # (1, P)
        alpha = (planes - sm[:, None]) / dm[:, None]
        n_main = shape_t[main][:, None]
        valid = (alpha >= 0) & (alpha <= 1) & (planes < n_main)
        pts = src + alpha[..., None] * d[:, None, :]  # (N, P, 3) voxel coordinates
        grid = (2.0 * (pts + offset) / scale - 1.0).flip(-1).to(torch.float32)
        samples = F.grid_sample(grid_vol, grid[None, None], mode="bilinear", padding_mode="zeros", align_corners=True)
        samples = samples[0, 0, 0] * valid
        out.append(samples.sum(1).to(lengths.dtype) * lengths[sl] / dm.abs())
    return torch.cat(out) if out else tgts.new_zeros(0)
