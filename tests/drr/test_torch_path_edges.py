"""The PyTorch reference path (``torch_ops``) against the compiled kernels at the edges: size-1 axes (trilinear) and
rays that run along a voxel face (Siddon)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unimiss_monai import drr
from unimiss_monai.drr.geometry import ConeBeam
from unimiss_monai.drr.kernels import _pixel_ray
from unimiss_monai.drr.torch_ops import siddon_torch
from unimiss_monai.drr.volume import prepare_volume

from .test_render import _oblique_affine

OBLIQUE = {"view": "PA", "rotation": (10, -20, 25)}
ANISO = np.diag([0.75, 1.25, 2.0, 1.0])


def _both_backends(vol, affine, views, **kw):
    fast = drr.render(vol, affine, views=views, backend="numba", volume_unit="mu", **kw)
    ref = drr.render(torch.from_numpy(vol), affine, views=views, backend="torch", volume_unit="mu", **kw)
    scale = fast.abs().amax().item()
    assert scale > 0
    torch.testing.assert_close(ref, fast, rtol=0.0, atol=1e-5 * scale)
    return fast, ref


def _even_phantom(border: bool) -> np.ndarray:
    """20x24x16 random values; with ``border``, zeros around a box (the kernel then skips empty blocks)."""
    rng = np.random.default_rng(7)
    vol = rng.uniform(0.2, 1.0, (20, 24, 16)).astype(np.float32)
    if border:
        inner = np.zeros_like(vol)
        inner[3:17, 4:20, 2:14] = vol[3:17, 4:20, 2:14]
        vol = inner
    return vol


@pytest.mark.parametrize("shape", [(20, 24, 1), (20, 1, 16), (1, 24, 16), (1, 1, 16)])
@pytest.mark.parametrize("affine", [np.eye(4), ANISO, _oblique_affine()], ids=["eye", "aniso", "oblique"])
def test_trilinear_size_one_axis_matches_numba(shape, affine):
    vol = np.random.default_rng(2).uniform(0.0, 1.0, shape).astype(np.float32)
    views = ["AP", "LAT_LEFT", OBLIQUE, {"view": "AP", "rotation": (90, 0, 0)}]
    _both_backends(vol, affine, views, detector_shape=(21, 23), pixel_spacing=1.0, sdd=300.0, sid=200.0,
                   method="trilinear")


def test_trilinear_size_one_axis_is_zero_outside():
    """A one-voxel-thick slab seen edge-on: interpolation falls off to zero within one voxel of it (rows 9-11)."""
    vol = np.random.default_rng(0).uniform(0.0, 1.0, (20, 24, 1)).astype(np.float32)
    _, ref = _both_backends(vol, np.eye(4), ["AP"], detector_shape=(21, 23), pixel_spacing=1.0, sdd=300.0,
                            sid=200.0, method="trilinear")
    rows = torch.nonzero(ref[0].abs().sum(1)).flatten().tolist()
    assert rows == [9, 10, 11]


@pytest.mark.parametrize("border", [False, True], ids=["dense", "empty_border"])
@pytest.mark.parametrize("sdd, sid", [(300.0, 200.0), (1020.0, 850.0)])
def test_siddon_rays_on_voxel_faces_match_numba(border, sdd, sid):
    """Even-sized volume, odd detector: the central row's and column's rays run along voxel faces (to rounding).
    ``pixel_spacing`` 1.5625 is a binary fraction, so both backends generate these rays to the same bits."""
    views = ["AP", "PA", "LAT_LEFT", "LAT_RIGHT", OBLIQUE]
    _both_backends(_even_phantom(border), np.eye(4), views, detector_shape=(33, 31), pixel_spacing=1.5625, sdd=sdd,
                   sid=sid, method="siddon")


@pytest.mark.parametrize("affine", [np.eye(4), ANISO], ids=["eye", "aniso"])
@pytest.mark.parametrize("view", ["AP", "PA", "LAT_LEFT", "LAT_RIGHT", {"view": "AP", "rotation": (0, 0, 90)}])
def test_siddon_torch_on_kernel_rays_matches_kernel(affine, view):
    """Given the kernel's own rays (``_pixel_ray``, rounded as compiled), ``siddon_torch`` attributes face-parallel
    rays to the same voxels as the walk, for any pixel spacing and affine."""
    vol = _even_phantom(border=True)
    geom = ConeBeam((33, 31), 1.1, 300.0, 200.0)
    fast = drr.render(vol, affine, views=[view], backend="numba", volume_unit="mu", detector_shape=(33, 31),
                      pixel_spacing=1.1, sdd=300.0, sid=200.0)[0]
    frame, world = prepare_volume(vol, affine, volume_unit="mu").detector_frame(geom, drr.as_pose(view))
    rays = [_pixel_ray(frame, world, r, c) for r in range(33) for c in range(31)]
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    ref = siddon_torch(torch.from_numpy(vol), as_t(frame[0]), as_t([p for p, _ in rays]), as_t([n for _, n in rays]))
    torch.testing.assert_close(ref.reshape(33, 31).float(), fast, rtol=0.0, atol=1e-5 * fast.abs().amax().item())
