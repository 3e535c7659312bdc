"""Volumes in any memory order render alike without being reordered: Fortran (as nibabel reads a NIfTI), C, transposed
and flipped views, strided slices, integer HU; and the prepared attenuation equals the HU model voxel for voxel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unimiss_monai import drr
from unimiss_monai.drr.layout import memory_layout

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
