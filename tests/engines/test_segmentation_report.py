"""Segmentation report: MONAI-based metrics agree with an independent scipy computation; files round-trip; 2D and 3D."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image
from scipy import ndimage

from unimiss_monai.engines import SegmentationReport, compute_segmentation_metrics, write_segmentation_report


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
    assert out["dice"] == [0.0] and math.isnan(out["hd95"][0])
    with pytest.raises(ValueError, match="disagree in shape"):
        compute_segmentation_metrics(torch.zeros(1, 8, 8), label, 2)


def test_write_report_round_trip(tmp_path):
    cases = [
        {"case": "a", "dice": [0.5, float("nan")], "hd95": [2.0, float("nan")], "surface_dice": [0.8, float("nan")]},
        {"case": "b", "dice": [1.0, 0.25], "hd95": [0.0, 4.0], "surface_dice": [1.0, 0.5]},
    ]
    paths = write_segmentation_report(cases, ["liver", "spleen"], tmp_path / "out")
    report = json.loads(open(paths["json"]).read())
    assert report["mean"]["liver"]["dice"] == pytest.approx(0.75) and report["mean"]["spleen"]["dice"] == 0.25
    assert report["mean"]["spleen"]["dice_n"] == 1 and report["cases"][0]["dice"]["spleen"] is None
    rows = list(csv.DictReader(open(paths["csv"])))
    assert len(rows) == 2 * 2 + 2 and rows[1] == {"case": "a", "structure": "spleen", "dice": "", "hd95": "", "surface_dice": ""}
    assert float(rows[-2]["hd95"]) == pytest.approx(1.0)
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize("spatial", [(32, 28), (20, 18, 12)], ids=["2d", "3d"])
def test_handler_on_engine(tmp_path, spatial):
    nd = len(spatial)
    spacing = (2.0,) * nd
    affine = torch.diag(torch.tensor([*spacing] + [1.0] * (4 - nd)))

    def item(i):
        gt = _box(spatial, (3,) * nd, (6,) * nd) * 1 + _box(spatial, (11,) * nd, (4,) * nd) * 2
        pr = _box(spatial, (3 + i,) + (3,) * (nd - 1), (6,) * nd) * 1 + _box(spatial, (11,) * nd, (4,) * nd) * 2
        meta = {"filename_or_obj": f"/data/case{i}.nii.gz"}
        onehot = lambda m: torch.nn.functional.one_hot(torch.from_numpy(m).long(), 3).movedim(-1, 0).float()
        return {
            "image": MetaTensor(torch.rand(1, *spatial), affine=affine, meta=meta),
            "label": MetaTensor(onehot(gt), affine=affine, meta=meta),
            "pred": MetaTensor(onehot(pr), affine=affine, meta=meta),
        }

    data = [[item(0), item(1)], [item(2)]]
    engine = Engine(lambda e, batch: batch)
    handler = SegmentationReport(tmp_path, ["liver", "spleen"], tolerance=2.0, max_overlay_cases=2)
    handler.attach(engine)
    engine.run(data, max_epochs=1)
    report = json.loads(open(handler.paths["json"]).read())
    assert [c["case"] for c in report["cases"]] == ["case0", "case1", "case2"]
    dice = [c["dice"]["liver"] for c in report["cases"]]
    assert dice[0] == pytest.approx(1.0) and dice[0] > dice[1] > dice[2]
    # a shift of one voxel is 2 mm at this spacing: the distances come back in millimetres
    assert report["cases"][1]["hd95"]["liver"] == pytest.approx(2.0)
    assert report["mean"]["spleen"]["dice"] == pytest.approx(1.0)
    png = Image.open(handler.paths["png"])
    assert png.size[0] > 300 and png.size[1] > 300
    with pytest.raises(ValueError, match="structure_names is empty"):
        SegmentationReport(tmp_path, [])
