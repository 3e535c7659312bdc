"""Empty-space skipping: the block map marks exactly the blocks holding a nonzero voxel, in the kernels' memory order,
and views rendered with it equal views that walk every ray whole and the independent numpy walk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unimiss_monai import drr
from unimiss_monai.drr.empty_space import BLOCK, block_grid
from unimiss_monai.drr.layout import memory_layout

from .reference import siddon_numpy

AFFINE = np.diag([1.2, 0.9, 1.6, 1.0])
GEOM = dict(detector_shape=(13, 15), pixel_spacing=(5.0, 4.0), sdd=400.0, sid=260.0)
POSES = [drr.Pose("AP"), drr.Pose("LL"), drr.Pose("PA", rotation=(20, -15, 35)), drr.Pose("AP", rotation=(0, 0, 90))]


def _sparse_mu(shape=(37, 35, 34)):
    """Attenuation that is zero except a few features, some on either side of a block face (voxels 15 and 16)."""
    mu = np.zeros(shape, np.float32)
    mu[15, 16, 16] = 0.9  # last voxel of block 0 along x, first of block 1 along y and z
    mu[16, 15, 2] = 0.7
    mu[18:30, 3:12, 18:32] = 0.05
    mu[36, 34, 33] = 0.5  # the far corner voxel, in a block cut short by the volume's edge
    mu[2, 30, 17] = -0.3  # attenuation as given ("mu") may be negative: still not empty
    mu[30, 3, 3] = -0.0  # negative zero adds nothing: empty
    return mu


def _blocks_reference(values: np.ndarray) -> np.ndarray:
    grid = block_grid(values.shape)
    want = np.zeros(grid, bool)
    for i, j, k in np.ndindex(*grid):
        block = values[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK, k * BLOCK:(k + 1) * BLOCK]
        want[i, j, k] = bool((block != 0).any())
    return want


def _layouts(mu):
    """The same volume as C, Fortran, flipped and transposed arrays, a strided slice, and float64 (so converted)."""
    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flip[1, 3] = mu.shape[1] - 1
    yield "C", np.ascontiguousarray(mu), AFFINE
    yield "F", np.asfortranarray(mu), AFFINE
    yield "flipped", np.asfortranarray(mu[:, ::-1])[:, ::-1], AFFINE  # memory flipped along y, same voxels
    yield "flip-affine", np.ascontiguousarray(mu[:, ::-1]), AFFINE @ flip
    yield "transposed", np.ascontiguousarray(mu.transpose(2, 0, 1)).transpose(1, 2, 0), AFFINE
    yield "strided", np.repeat(mu, 2, axis=2)[:, :, ::2], AFFINE
    yield "float64", mu.astype(np.float64), AFFINE


LAYOUTS = ["C", "F", "flipped", "flip-affine", "transposed", "strided", "float64"]


def _prepared(name):
    """:func:`_sparse_mu` in one of :func:`_layouts`, prepared with its block map."""
    volume, affine = dict((n, (v, a)) for n, v, a in _layouts(_sparse_mu()))[name]
    # float32 "mu" is used as it is, without a map: convert it (from float64) as HU would be
    return drr.prepare_volume(volume.astype(np.float64) if volume.dtype == np.float32 else volume, affine,
                              volume_unit="mu")


@pytest.mark.parametrize("name", LAYOUTS)
def test_block_map_marks_exactly_the_blocks_with_a_nonzero_voxel(name):
    prep = _prepared(name)
    layout = memory_layout(prep.values)
    assert prep.occupancy is not None and prep.occupancy.shape == block_grid(layout.array.shape)
    want = _blocks_reference(layout.array)
    assert 0 < want.sum() < want.size  # some blocks empty, some not
    np.testing.assert_array_equal(prep.occupancy.astype(bool), want)


def test_block_map_of_hu_marks_air_above_minus_1000_only():
    hu = np.full((40, 20, 18), -1000.0, np.float32)  # air: exactly zero attenuation
    hu[:, :, 17] = -1024.0  # below -1000 is clamped to zero as well
    hu[33, 4, 5] = -999.0  # a hair above air: not zero
    prep = drr.prepare_volume(hu, AFFINE)
    want = np.zeros((3, 2, 2), bool)
    want[2, 0, 0] = True
    np.testing.assert_array_equal(prep.occupancy.astype(bool), want)


@pytest.mark.parametrize("name", LAYOUTS)
def test_skipping_empty_blocks_leaves_every_view_unchanged(name):
    prep = _prepared(name)
    whole = drr.PreparedVolume(prep.values, prep.affine)  # no map: every ray walked from entry to exit
    assert whole.occupancy is None
    geometry = drr.ConeBeam(**GEOM)
    for method in drr.METHODS:
        got = drr.project(prep, geometry, POSES, method)
        want = drr.project(whole, geometry, POSES, method)
        assert (want != 0).float().mean() > 0.1 and (want == 0).any()  # rays through features and rays past them
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_skipping_agrees_with_the_independent_walk():
    mu = _sparse_mu()
    prep = drr.prepare_volume(np.asfortranarray(mu, dtype=np.float64), AFFINE, volume_unit="mu")
    geometry = drr.ConeBeam(**GEOM)
    for pose in POSES:
        source, pixels = geometry.pixel_centres(pose, prep.center)
        want = np.array([[siddon_numpy(mu, AFFINE, source, p) for p in row] for row in pixels])
        got = drr.project(prep, geometry, [pose])[0].numpy()
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


def test_prepared_values_are_read_only_and_a_foreign_map_is_refused():
    hu = np.full((20, 18, 17), -1000.0, np.float32)
    hu[3:6, 4:9, 2:5] = 40.0
    prep = drr.prepare_volume(hu, AFFINE)
    with pytest.raises(ValueError, match="read-only"):
        prep.values[0, 0, 0] = 1.0  # the map would no longer describe the values
    wrong = drr.PreparedVolume(prep.values, prep.affine, np.ones((1, 1, 1), np.uint8))
    with pytest.raises(ValueError, match="block map"):
        drr.project(wrong, drr.ConeBeam(**GEOM), POSES[:1])
    # the PyTorch path reads the same read-only values (an oblique view: no ray runs along a voxel face)
    ref = drr.render(prep, None, views=POSES[2], backend="torch", **GEOM)
    assert ref.amax() > 0
    torch.testing.assert_close(drr.render(prep, None, views=POSES[2], **GEOM), ref, rtol=1e-5, atol=1e-5)


def test_ray_ends_skip_to_the_faces_of_the_first_and_last_marked_blocks():
    from unimiss_monai.drr.kernels import skip_empty

    occ = np.zeros((4, 2, 1), np.uint8)
    occ[2, 1, 0] = 1  # voxels x 32..47 (faces at 31.5 and 47.5), y 16..31
    src, tgt = np.array([-100.0, 20.0, 3.0]), np.array([200.0, 20.0, 3.0])  # along x, 300 voxels long
    a_lo, a_hi = 99.5 / 300, 163.5 / 300  # entry at x = -0.5, exit at x = 63.5
    assert skip_empty(occ, 16, src, tgt, a_lo, a_hi, 1) == pytest.approx(32 / 300, abs=1e-9)
    assert skip_empty(occ, 16, src, tgt, a_lo, a_hi, -1) == pytest.approx(16 / 300, abs=1e-9)
    # the same from the other side, and a ray through y blocks 0 only, which meets no marked block
    assert skip_empty(occ, 16, tgt, src, 1 - a_hi, 1 - a_lo, 1) == pytest.approx(16 / 300, abs=1e-9)
    below = np.array([-100.0, 9.0, 3.0]), np.array([200.0, 9.0, 3.0])
    assert skip_empty(occ, 16, *below, a_lo, a_hi, 1) == pytest.approx(a_hi - a_lo)
    # from x = 15.7, inside voxel 16 and so in block 1 (empty), though block 0 (marked) ends at 15.5
    occ[0, 1, 0] = 1
    assert skip_empty(occ, 16, src, tgt, 115.7 / 300, a_hi, 1) == pytest.approx((31.5 - 15.7) / 300, abs=1e-9)


def test_label_walk_skipping_empty_blocks_equals_the_mask_drrs():
    lab = np.zeros((37, 35, 34), np.uint8)
    lab[14:16, 16:18, 10:20] = 1  # on either side of block faces, as in _sparse_mu
    lab[16:18, 12:16, 2:6] = 5
    lab[18:30, 3:12, 18:32] = 9
    lab[36, 34, 33] = 200  # not asked for below: a block holding only it is walked, and adds nothing
    lab = np.asfortranarray(lab)
    thick = drr.project_labels(lab, AFFINE, label_ids=[1, 5, 9], views=POSES, **GEOM)
    for c, value in enumerate((1, 5, 9)):
        # float32 attenuation used as it is has no block map: the view kernel walks each ray whole
        mask = drr.render((lab == value).astype(np.float32), AFFINE, views=POSES, volume_unit="mu", **GEOM)
        assert mask.amax() > 0
        torch.testing.assert_close(thick[:, c], mask, rtol=1e-5, atol=1e-5)
    # asking for the background walks every ray whole: its thickness is the rest of each chord
    with_background = drr.project_labels(lab, AFFINE, label_ids=[0, 9], views=POSES, **GEOM)
    background = drr.render((lab == 0).astype(np.float32), AFFINE, views=POSES, volume_unit="mu", **GEOM)
    torch.testing.assert_close(with_background[:, 0], background, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(with_background[:, 1], thick[:, 2])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_label_block_map_marks_exactly_the_blocks_with_a_label(dtype):
    from unimiss_monai.drr.empty_space import nonzero_block_map

    lab = np.zeros((37, 35, 34), dtype)
    lab[15, 16, 16] = 1
    lab[36, 34, 33] = 3  # in the last, shorter run of a row
    lab[2, 30, 17] = -1 if np.issubdtype(dtype, np.signedinteger) else 7
    want = _blocks_reference(lab)
    assert 0 < want.sum() < want.size
    np.testing.assert_array_equal(nonzero_block_map(lab).astype(bool), want)
