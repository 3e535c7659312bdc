"""Volumes in any memory order render alike without being reordered: Fortran (as nibabel reads a NIfTI), C, transposed
and flipped views, strided slices, integer HU; the prepared attenuation equals the HU model voxel for voxel; and the
loop order chosen for the memory order (strips for rays along the contiguous axis) changes no pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unimiss_monai import drr
from unimiss_monai.drr.empty_space import no_skipping
from unimiss_monai.drr.kernels import SIDDON, TRILINEAR, view_kernel
from unimiss_monai.drr.layout import STRIP, frame_in_memory_order, loop_order, memory_layout

from .reference import siddon_numpy

GEOM = dict(detector_shape=(9, 11), pixel_spacing=(4.0, 3.0), sdd=300.0, sid=200.0)
VIEWS = ["AP", {"view": "LL", "rotation": (10, -15, 20)}]


def _hu(shape=(10, 9, 7), seed=0):
    return np.random.default_rng(seed).uniform(-1100, 1800, shape).astype(np.float32)


def _affine():
    affine = np.diag([1.5, 0.9, 2.0, 1.0])
    affine[:3, 3] = (-6.0, 4.0, -3.0)
    return affine


def _flip_affine(affine, axis, n):
    """Affine of ``volume`` flipped along ``axis`` (index ``n - 1 - i``): the same world points."""
    flip = np.eye(4)
    flip[axis, axis], flip[axis, 3] = -1.0, n - 1
    return affine @ flip


@pytest.mark.parametrize("order", ["C", "F"])
def test_prepared_values_are_the_hu_model_in_the_same_layout(order):
    hu = np.asarray(_hu(), order=order)
    prep = drr.prepare_volume(hu, _affine(), bone_slope=1.7)
    assert prep.values.dtype == np.float32 and prep.values.shape == hu.shape
    assert prep.values.flags[f"{order}_CONTIGUOUS"]  # no reordering copy
    want = np.maximum(drr.MU_WATER_70KEV * (1 + np.where(hu > 0, 1.7 * hu.astype(np.float64), hu) / 1000), 0)
    np.testing.assert_array_equal(prep.values, want.astype(np.float32))  # float64 maths, rounded once


def test_any_memory_order_gives_the_same_image():
    hu, affine = _hu(), _affine()
    ref = drr.render(np.ascontiguousarray(hu), affine, views=VIEWS, **GEOM)
    fortran = np.asfortranarray(hu)
    assert not fortran.flags.c_contiguous
    torch.testing.assert_close(drr.render(fortran, affine, views=VIEWS, **GEOM), ref, rtol=1e-5, atol=1e-5)
    # a flipped view with the affine that keeps every voxel at its world position
    flipped = hu[:, ::-1]
    torch.testing.assert_close(drr.render(flipped, _flip_affine(affine, 1, hu.shape[1]), views=VIEWS, **GEOM), ref,
                               rtol=1e-5, atol=1e-5)
    # the same voxels stored (Z, Y, X) and seen through a transposed view
    zyx = np.ascontiguousarray(hu.transpose(2, 1, 0))
    torch.testing.assert_close(drr.render(zyx.transpose(2, 1, 0), affine, views=VIEWS, **GEOM), ref, rtol=1e-5,
                               atol=1e-5)
    # a strided slice is no single block of memory: read in place, written in C order
    strided = np.repeat(hu, 2, axis=0)[::2]
    assert memory_layout(strided) is None
    torch.testing.assert_close(drr.render(strided, affine, views=VIEWS, **GEOM), ref, rtol=1e-5, atol=1e-5)
    # integer HU as stored in DICOM
    ints = np.round(hu).astype(np.int16, order="F")
    torch.testing.assert_close(drr.render(ints, affine, views=VIEWS, **GEOM),
                               drr.render(np.round(hu), affine, views=VIEWS, **GEOM), rtol=1e-5, atol=1e-5)


def test_fortran_flipped_volume_matches_independent_reference():
    mu = np.asfortranarray(np.random.default_rng(5).uniform(0, 1, (8, 9, 6)).astype(np.float32))[::-1, :, ::-1]
    affine = _affine()
    pose = drr.Pose("PA", rotation=(15, -10, 25))
    geometry = drr.ConeBeam(GEOM["detector_shape"], GEOM["pixel_spacing"], GEOM["sdd"], GEOM["sid"])
    source, pixels = geometry.pixel_centres(pose, drr.volume_center(mu.shape, affine))
    want = np.array([[siddon_numpy(mu, affine, source, p) for p in row] for row in pixels])
    got = drr.render(mu, affine, views=[pose], volume_unit="mu", **GEOM)[0].numpy()
    assert (want > 0).mean() > 0.3
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


def test_float32_attenuation_is_used_without_a_copy():
    mu = np.asfortranarray(np.random.default_rng(6).uniform(0, 0.03, (6, 5, 4)).astype(np.float32))
    assert np.shares_memory(drr.prepare_volume(mu, np.eye(4), volume_unit="mu").values, mu)
    mu[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN voxels"):
        drr.prepare_volume(mu, np.eye(4), volume_unit="mu")
    with pytest.raises(ValueError, match="1 NaN voxels"):
        drr.prepare_volume(mu[::-1], np.eye(4))


def test_non_numeric_volume_is_rejected():
    with pytest.raises(ValueError, match="must hold numbers"):
        drr.prepare_volume(np.zeros((3, 3, 3), dtype=np.complex64), np.eye(4))


def test_label_thickness_is_independent_of_memory_order():
    labels = np.random.default_rng(7).integers(0, 4, (10, 9, 7)).astype(np.int32)
    kw = dict(views=VIEWS, **GEOM)
    ref = drr.project_labels(np.ascontiguousarray(labels), _affine(), [1, 3], **kw)
    assert ref[:, 0].amax() > 0 and ref[:, 1].amax() > 0
    for other, affine in ((np.asfortranarray(labels), _affine()),
                          (np.asfortranarray(labels)[:, :, ::-1], _flip_affine(_affine(), 2, labels.shape[2])),
                          (labels.astype(np.uint8), _affine())):
        torch.testing.assert_close(drr.project_labels(other, affine, [1, 3], **kw), ref, rtol=1e-5, atol=1e-5)


def _memory_frame(volume, affine, pose, geometry, volume_unit="hu"):
    """A prepared volume's memory layout and the frame of ``pose`` in it, as ``render`` hands them to the kernel."""
    prep = drr.prepare_volume(volume, affine, volume_unit=volume_unit)
    frame, world = prep.detector_frame(geometry, drr.as_pose(pose))
    layout = memory_layout(prep.values)
    return layout, frame_in_memory_order(frame, layout), world


@pytest.mark.parametrize("order, pose, shape, want", [
    ("F", "LL", (96, 80), STRIP),  # a NIfTI CT seen from the side: rays along x, its contiguous axis
    ("F", "RL", (64, 64), STRIP),
    ("F", {"view": "AP", "rotation": (0, 0, 80)}, (96, 80), STRIP),  # 10 degrees off the contiguous axis
    ("F", "AP", (96, 80), 0),  # rays across x: neighbours in a line share cache lines
    ("F", {"view": "AP", "rotation": (0, 0, 45)}, (96, 80), 0),
    ("F", "LL", (96, 40), 0),  # too narrow for two strips
    ("C", "LL", (96, 80), 0),  # the contiguous axis is z, which no lateral ray follows
])
def test_loop_order_strips_only_rays_along_the_contiguous_axis(order, pose, shape, want):
    hu = np.asarray(_hu((30, 26, 12)), order=order)
    _, frame, _ = _memory_frame(hu, _affine(), pose, drr.ConeBeam(shape, 2.0, 300.0, 200.0))
    rows_inner, strip = loop_order(frame, shape)
    assert strip == want
    # the inner loop moves the rays along the contiguous axis at least as fast as the other detector axis would
    inner, other = (frame[2], frame[3]) if rows_inner else (frame[3], frame[2])
    assert abs(inner[2]) >= abs(other[2])


@pytest.mark.parametrize("method", [SIDDON, TRILINEAR])
@pytest.mark.parametrize("rows_inner", [False, True])
def test_strips_write_every_pixel_with_the_same_value(method, rows_inner):
    mu = np.asfortranarray(np.random.default_rng(8).uniform(0, 0.03, (30, 26, 12)).astype(np.float32))
    layout, frame, world = _memory_frame(mu, _affine(), {"view": "LL", "rotation": (5, -5, 10)},
                                         drr.ConeBeam((37, 45), 1.0, 300.0, 200.0), "mu")
    flat, shape = layout.array.reshape(-1), np.asarray(layout.array.shape, np.int64)
    occ, block = no_skipping()
    images = {}
    for strip in (0, 1, 5, 32, 45, 200):  # strips that do and do not divide the inner axis, wider than it
        out = np.full((37, 45), np.nan, np.float32)
        view_kernel(flat, shape, occ, block, frame, world, rows_inner, strip, method, out)
        images[strip] = out
    assert np.isfinite(images[0]).all() and (images[0] > 0).mean() > 0.4
    for strip, image in images.items():
        np.testing.assert_array_equal(image, images[0], err_msg=f"strip {strip}")


def test_lateral_view_in_strips_matches_independent_reference():
    mu = np.asfortranarray(np.random.default_rng(9).uniform(0, 1, (14, 12, 6)).astype(np.float32))
    affine, pose, shape = _affine(), drr.Pose("LL", rotation=(4, -3, 6)), (70, 66)
    geom = dict(detector_shape=shape, pixel_spacing=0.5, sdd=300.0, sid=200.0)
    geometry = drr.ConeBeam(**geom)
    _, frame, _ = _memory_frame(mu, affine, pose, geometry, "mu")
    assert loop_order(frame, shape)[1] == STRIP  # render walks this view in strips
    source, pixels = geometry.pixel_centres(pose, drr.volume_center(mu.shape, affine))
    got = drr.render(mu, affine, views=[pose], volume_unit="mu", **geom)[0].numpy()
    rows, cols = np.arange(0, 70, 3), np.arange(1, 66, 4)  # a grid across every strip
    want = np.array([[siddon_numpy(mu, affine, source, pixels[r, c]) for c in cols] for r in rows])
    assert (want > 0).mean() > 0.3
    np.testing.assert_allclose(got[np.ix_(rows, cols)], want, rtol=2e-6, atol=1e-6)
