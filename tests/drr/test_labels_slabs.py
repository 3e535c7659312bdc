"""Label thickness maps and CT slabs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unimiss_monai import drr

GEOM = dict(detector_shape=(12, 10), pixel_spacing=2.0, sdd=300.0, sid=200.0)


def _labels():
    lab = np.zeros((10, 12, 9), np.int16)
    lab[2:6, 3:9, 1:5] = 3
    lab[5:9, 2:7, 4:8] = 7
    return lab


def test_label_thickness_equals_drr_of_the_mask_and_masks_align():
    lab, affine = _labels(), np.diag([1.2, 0.9, 1.7, 1.0])
    views = ["AP", {"view": "LL", "rotation": (0, 10, 15)}]
    thick = drr.project_labels(lab, affine, views=views, **GEOM)
    assert thick.shape == (2, 2, 12, 10)
    for c, value in enumerate((3, 7)):
        mask_drr = drr.render((lab == value).astype(np.float32), affine, views=views, volume_unit="mu", **GEOM)
        torch.testing.assert_close(thick[:, c], mask_drr, rtol=1e-5, atol=1e-5)
        assert torch.equal(drr.label_masks(thick)[:, c], mask_drr > 0)
    only7 = drr.project_labels(lab, affine, label_ids=[7], views=views, **GEOM)
    torch.testing.assert_close(only7[:, 0], thick[:, 1])


def test_default_label_ids_are_the_positive_values_in_any_memory_order():
    lab = np.asfortranarray(_labels())
    lab[0, 0, 0] = -1  # an "ignore" value: not a structure
    got = drr.project_labels(lab, np.eye(4), views="AP", **GEOM)
    want = drr.project_labels(np.ascontiguousarray(lab), np.eye(4), label_ids=[3, 7], views="AP", **GEOM)
    assert got.shape[1] == 2
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint64, np.int64])
def test_present_labels_are_the_sorted_positive_values(dtype):
    rng = np.random.default_rng(0)
    values = rng.choice([0, 2, 5, 9, 300], size=(6, 5, 4)).astype(dtype)
    if np.issubdtype(dtype, np.signedinteger):
        values[0, 0, 0] = -1
    for arr in (values, np.asfortranarray(values)):
        np.testing.assert_array_equal(drr.present_labels(arr), [v for v in np.unique(arr) if v > 0])
    big = np.array([[[0, 3, 1 << 40]]], np.int64)  # too large for a histogram: the np.unique path
    np.testing.assert_array_equal(drr.present_labels(big), [3, 1 << 40])
    assert drr.present_labels(np.zeros((0, 2, 2), np.int32)).size == 0


def test_split_slabs_cover_volume_with_correct_affines():
    vol = np.arange(6 * 5 * 50, dtype=np.float32).reshape(6, 5, 50)
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    affine[:3, 3] = (10.0, -20.0, -300.0)
    slabs = drr.split_slabs(vol, affine, slab_thickness=24)
    assert [(s.start, s.stop) for s in slabs] == [(0, 24), (24, 48), (26, 50)]
    covered = np.zeros(50, bool)
    for s in slabs:
        covered[s.start : s.stop] = True
        assert s.volume.shape == (6, 5, 24)
        np.testing.assert_array_equal(s.volume, vol[:, :, s.start : s.stop])
        np.testing.assert_allclose(s.affine @ [1, 2, 3, 1], affine @ [1, 2, s.start + 3, 1])
    assert covered.all()
    assert len(drr.split_slabs(vol, affine, 24, stride=12)) == 4


def test_slab_axis_follows_the_affine_and_render_slabs_shape():
    vol = np.zeros((30, 6, 7), np.float32)  # first voxel axis is superior-inferior
    vol[10:20] = 0.01
    affine = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])
    slabs = drr.split_slabs(vol, affine, slab_thickness=10)
    assert slabs[0].axis == 0 and len(slabs) == 3
    images = drr.render_slabs(vol, affine, slab_thickness=10, output_shape=(16, 16), volume_unit="mu",
                              sdd=300.0, sid=200.0, pixel_spacing=0.5)
    assert images.shape == (3, 16, 16)
    assert images[1].max() > 0 and images[0].max() == 0 and images[2].max() == 0


def test_labels_reject_non_integer_values():
    with pytest.raises(ValueError, match="integer"):
        drr.project_labels(np.full((3, 3, 3), 0.5), np.eye(4), **GEOM)


def test_render_slabs_returns_the_spacing_of_a_detector_that_covers_each_slab():
    vol = np.random.default_rng(1).uniform(0, 0.02, (20, 16, 30)).astype(np.float32)
    affine = np.diag([1.2, 0.9, 2.0, 1.0])
    kw = dict(slab_thickness=8, view="LL", output_shape=(12, 20), pixel_spacing=1.0, sdd=300.0, sid=200.0,
              volume_unit="mu")
    images, spacing = drr.render_slabs(vol, affine, return_spacing=True, **kw)
    np.testing.assert_array_equal(images.numpy(), drr.render_slabs(vol, affine, **kw).numpy())
    slabs = drr.split_slabs(vol, affine, 8)
    assert spacing.shape == (len(slabs), 2) == (4, 2)
    geometry = drr.ConeBeam((2, 2), 1.0, 300.0, 200.0)
    for slab, (d_row, d_col) in zip(slabs, spacing):
        # every corner of the slab, projected from the source onto the detector, lies on the resized image
        source, origin, col, row = geometry.frame(drr.Pose("LL"), drr.volume_center(slab.volume.shape, slab.affine))
        centre = origin + 0.5 * row + 0.5 * col  # the 2x2 detector's centre
        beam = (centre - source) / np.linalg.norm(centre - source)
        grid = np.meshgrid(*[[-0.5, n - 0.5] for n in slab.volume.shape], indexing="ij")
        corners = (slab.affine[:3, :3] @ np.array(grid).reshape(3, -1) + slab.affine[:3, 3:4]).T
        hits = source + (corners - source) * (300.0 / ((corners - source) @ beam))[:, None]
        assert np.abs((hits - centre) @ row).max() <= 12 * d_row / 2
        assert np.abs((hits - centre) @ col).max() <= 20 * d_col / 2
        # whole pixels of the requested size, resized to the output shape
        shape = drr.fit_slab_detector(slab, 1.0, 300.0, 200.0)
        np.testing.assert_allclose((d_row * 12, d_col * 20), shape)


def test_a_source_inside_the_slab_is_refused():
    # a 200 mm cube has a half diagonal of 173 mm: a source 150 mm from its centre lies inside it, and the magnified
    # extent would come out negative (a 2x2 detector, silently)
    slab = drr.split_slabs(np.zeros((100, 100, 100), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), 100)[0]
    with pytest.raises(ValueError, match="sid 150 mm must exceed the slab's half diagonal 173.2 mm"):
        drr.fit_slab_detector(slab, 1.0, 300.0, 150.0)
    assert min(drr.fit_slab_detector(slab, 1.0, 1000.0, 800.0)) > 200  # a source outside it: the whole slab, magnified


def test_slabs_honour_a_row_and_column_pixel_spacing():
    # a 20 mm cube of unit attenuation at the centre of a 60 mm slab of air: its nearest face, 10 mm before the
    # isocentre, is magnified sdd / (sid - 10), so it spans 20 * 300 / 190 = 31.6 mm each way on the detector, i.e.
    # 31.6 rows of 1 mm (along the superior axis) and 15.8 columns of 2 mm (across it)
    vol = np.zeros((60, 60, 60), np.float32)
    vol[20:40, 20:40, 20:40] = 1.0
    affine = np.eye(4)
    slab = drr.split_slabs(vol, affine, 60)[0]
    square = drr.fit_slab_detector(slab, 1.0, 300.0, 200.0)
    shape = drr.fit_slab_detector(slab, (1.0, 2.0), 300.0, 200.0)
    assert shape == (square[0], int(np.ceil(square[1] / 2)))  # the slab's extent in whole pixels of each size
    assert drr.fit_slab_detector(slab, (1.0, 1.0), 300.0, 200.0) == square  # a scalar still means square
    for view in ("AP", "LL"):  # across the superior axis lies the patient's width, or its depth
        # output_shape = the fitted detector: no resampling, each pixel as rendered
        images, spacing = drr.render_slabs(vol, affine, 60, view=view, output_shape=shape, pixel_spacing=(1.0, 2.0),
                                           sdd=300.0, sid=200.0, volume_unit="mu", return_spacing=True)
        np.testing.assert_allclose(spacing, [[1.0, 2.0]])
        hit = images[0].numpy() > 0
        rows, cols = np.flatnonzero(hit.any(1)), np.flatnonzero(hit.any(0))
        extent = 20.0 * 300.0 / 190.0
        assert abs(len(rows) - extent / 1.0) <= 1 and abs(len(cols) - extent / 2.0) <= 1, (view, len(rows), len(cols))
        # centred on the detector
        assert abs(rows[0] + rows[-1] - (shape[0] - 1)) <= 2 and abs(cols[0] + cols[-1] - (shape[1] - 1)) <= 2


@pytest.mark.parametrize("spacing", [(1.0, 0.0), (1.0, float("nan")), (1.0, 2.0, 3.0)])
def test_slabs_refuse_a_spacing_that_is_not_positive_mm(spacing):
    slab = drr.split_slabs(np.zeros((4, 4, 4), np.float32), np.eye(4), 4)[0]
    with pytest.raises(ValueError, match="pixel_spacing"):
        drr.fit_slab_detector(slab, spacing, 300.0, 200.0)
