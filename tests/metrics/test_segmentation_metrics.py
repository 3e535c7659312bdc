"""Segmentation metrics (MONAI-based) agree with an independent scipy computation, in 2D and 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from unimiss_monai.metrics import compute_segmentation_metrics


def _box(shape, start, size):
    m = np.zeros(shape, bool)
    m[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return m


def _reference(pred: np.ndarray, gt: np.ndarray, spacing, tol):
    """Dice, HD95 and surface Dice written from their definitions: surfaces are mask minus its erosion."""
    dice = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
    edge_p = pred & ~ndimage.binary_erosion(pred)
    edge_g = gt & ~ndimage.binary_erosion(gt)
    d_pg = ndimage.distance_transform_edt(~edge_g, sampling=spacing)[edge_p]
    d_gp = ndimage.distance_transform_edt(~edge_p, sampling=spacing)[edge_g]
    hd95 = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
    nsd = ((d_pg <= tol).sum() + (d_gp <= tol).sum()) / (len(d_pg) + len(d_gp))
    return dice, hd95, nsd


@pytest.mark.parametrize(
    "shape,spacing",
    [((40, 36), (0.5, 1.25)), ((24, 22, 20), (1.5, 1.0, 2.5))],
    ids=["2d", "3d"],
)
def test_metrics_match_reference(shape, spacing):
    nd = len(shape)
    gt1, pred1 = _box(shape, (4,) * nd, (10,) * nd), _box(shape, (6,) + (4,) * (nd - 1), (10,) + (8,) * (nd - 1))
    gt2, pred2 = _box(shape, (15,) * nd, (4,) * nd), _box(shape, (15,) * nd, (4,) * nd)
    label = torch.from_numpy(gt1 * 1 + gt2 * 2)[None]
    pred = torch.from_numpy(pred1 * 1 + pred2 * 2)[None]
    out = compute_segmentation_metrics(pred, label, num_classes=4, spacing=spacing, tolerance=1.5)
    ref = _reference(pred1, gt1, spacing, 1.5)
    assert out["dice"][0] == pytest.approx(ref[0], abs=1e-6)
    assert out["hd95"][0] == pytest.approx(ref[1], rel=1e-4)
    assert out["surface_dice"][0] == pytest.approx(ref[2], abs=1e-4)
    assert out["hd95"][0] > 0 and 0 < out["dice"][0] < 1
    # identical structure: perfect scores; structure 3 absent from both: undefined, reported as nan
    assert out["dice"][1] == pytest.approx(1.0) and out["hd95"][1] == 0.0 and out["surface_dice"][1] == 1.0
    assert all(math.isnan(out[m][2]) for m in ("dice", "hd95", "surface_dice"))
    # one-hot input gives the same numbers as a label map
    onehot = torch.nn.functional.one_hot(pred[0].long(), 4).movedim(-1, 0)
    again = compute_segmentation_metrics(onehot, label, 4, spacing, 1.5)
    for m in out:
        np.testing.assert_allclose(again[m], out[m])


def test_missed_structure_and_shape_error():
    label = torch.from_numpy(_box((16, 16), (2, 2), (5, 5)).astype(np.int64))[None]
    out = compute_segmentation_metrics(torch.zeros_like(label), label, 2)
    # a miss scores 0 wherever a score is defined, and is flagged for the undefined HD95
    assert out["dice"] == [0.0] and out["surface_dice"] == [0.0] and math.isnan(out["hd95"][0])
    assert out["missed"] == [True]
    # predicted where the truth has none: a false positive, 0 as a miss is (MONAI's ignore_empty would leave nan)
    out = compute_segmentation_metrics(label, torch.zeros_like(label), 2)
    assert out["dice"] == [0.0] and out["surface_dice"] == [0.0] and math.isnan(out["hd95"][0])
    assert out["missed"] == [False] and out["false_positive"] == [True]
    # absent from both: not scored
    out = compute_segmentation_metrics(torch.zeros_like(label), torch.zeros_like(label), 2)
    assert all(math.isnan(out[m][0]) for m in ("dice", "hd95", "surface_dice"))
    assert out["missed"] == [False] and out["false_positive"] == [False]
    with pytest.raises(ValueError, match="disagree in shape"):
        compute_segmentation_metrics(torch.zeros(1, 8, 8), label, 2)


@pytest.mark.parametrize("bad", [3, -1])
def test_label_map_values_outside_the_classes_are_named(bad):
    label = torch.zeros(1, 8, 8, dtype=torch.int64)
    label[0, 2:4, 2:4] = 1
    wrong = label.clone()
    wrong[0, 0, 0] = bad
    with pytest.raises(ValueError, match=rf"values \[{bad}\] lie outside 0..2"):
        compute_segmentation_metrics(wrong, label, 3)
    assert compute_segmentation_metrics(label, label, 3)["dice"][0] == 1.0


@pytest.mark.parametrize("surface", [True, False], ids=["with_distances", "dice_only"])
def test_a_structure_predicted_where_the_truth_has_none_is_a_false_positive_in_3d(surface):
    # 3 classes (background, 1, 2) on a 12^3 grid at 2 mm: class 1 found exactly; the truth has no class 2, the
    # prediction 3 voxels of it
    one = _box((12, 12, 12), (2, 2, 2), (4, 4, 4))
    label = torch.from_numpy(one.astype(np.int64))[None]
    pred = label.clone()
    pred[0, 9, 9, 8:11] = 2
    out = compute_segmentation_metrics(pred, label, 3, spacing=(2.0, 2.0, 2.0), surface=surface)
    assert out["dice"] == [1.0, 0.0] and out["false_positive"] == [False, True] and out["missed"] == [False, False]
    if surface:
        assert out["surface_dice"] == [1.0, 0.0] and out["hd95"][0] == 0.0 and math.isnan(out["hd95"][1])
    else:
        assert all(math.isnan(v) for m in ("hd95", "surface_dice") for v in out[m])
    # the same case without the stray voxels: class 2 is absent from both, not scored, and no false positive
    out = compute_segmentation_metrics(label, label, 3, spacing=(2.0, 2.0, 2.0), surface=surface)
    assert out["dice"][0] == 1.0 and math.isnan(out["dice"][1]) and out["false_positive"] == [False, False]
