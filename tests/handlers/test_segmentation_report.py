"""Segmentation report: files round-trip, and the handler scores and draws 2D and 3D cases on an engine."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from PIL import Image

from unimiss_monai.handlers import SegmentationReport, write_segmentation_report


def _box(shape, start, size):
    m = np.zeros(shape, bool)
    m[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return m


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
    assert not list((tmp_path / "out").glob(".*unimiss-tmp*"))


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
            # a dict each: MetaTensor stores its affine into the dict it is given
            "image": MetaTensor(torch.rand(1, *spatial), affine=affine, meta=dict(meta)),
            "label": MetaTensor(onehot(gt), affine=affine, meta=dict(meta)),
            "pred": MetaTensor(onehot(pr), affine=affine, meta=dict(meta)),
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
    # Dice only (the command line's "false"): the same Dice, no distances
    dice_only = SegmentationReport(tmp_path / "dice_only", ["liver", "spleen"], max_overlay_cases=0, surface="false")
    dice_only.attach(engine)
    engine.run(data, max_epochs=1)
    lean = json.loads(open(dice_only.paths["json"]).read())
    assert [c["dice"] for c in lean["cases"]] == [c["dice"] for c in report["cases"]]
    assert all(v is None for c in lean["cases"] for m in ("hd95", "surface_dice") for v in c[m].values())
    assert lean["mean"]["liver"]["hd95_n"] == 0 and not lean["surface_metrics"] and report["surface_metrics"]
    with pytest.raises(ValueError, match="'surface' is 'maybe'"):
        SegmentationReport(tmp_path, ["liver"], surface="maybe")


def test_a_volume_is_shown_as_its_axial_slice_in_the_display_convention(tmp_path):
    # evaluate.json hands over the file's own grid, (1, X, Y, Z), here in RAS (MONAI's identity affine): the overlay
    # must be the axial slice z, reoriented to LPS like every network input, (X, Y) = (10, 8)
    label = np.zeros((1, 10, 8, 6), np.float32)
    label[0, 2, 1, 4] = 1  # one voxel: RAS (x 2, y 1, z 4) is LPS (x 7, y 6, z 4)
    affine = torch.eye(4)
    item = {key: MetaTensor(torch.from_numpy(label.copy()), affine=affine) for key in ("image", "label", "pred")}
    handler = SegmentationReport(tmp_path, ["nodule"], max_overlay_cases=1)
    handler.add(item, "case")
    _, image, truth, pred = handler.views[0]
    assert image.shape == (10, 8) and truth.shape == pred.shape == (1, 10, 8)  # one mask per structure
    assert np.argwhere(truth[0]).tolist() == [[7, 6]] and np.argwhere(pred[0]).tolist() == [[7, 6]] and image[7, 6] == 1


def test_overlapping_structures_both_show_in_the_overlay(tmp_path):
    # a radiograph's multi-label masks: the heart lies over the left lung; both colours must show where they overlap
    from PIL import Image

    from unimiss_monai.conventions import structure_colour

    lung, heart = _box((40, 40), (4, 4), (24, 24)), _box((40, 40), (16, 16), (16, 16))
    masks = torch.from_numpy(np.stack([~(lung | heart), lung, heart]).astype(np.float32))
    handler = SegmentationReport(tmp_path, ["lung_left", "heart"], max_overlay_cases=1)
    handler.add({"image": torch.zeros(1, 40, 40), "label": masks, "pred": masks}, "case")
    handler.write()
    _, _, truth, _ = handler.views[0]
    assert truth[0, 20, 20] and truth[1, 20, 20]  # the overlap keeps both structures
    rgb = np.asarray(Image.open(handler.paths["png"]).convert("RGB")).reshape(-1, 3).astype(int)
    # black image: lung alone, heart alone and their blend over the overlap all appear
    lung_only = 0.55 * np.asarray(structure_colour("lung_left"))
    both = 0.45 * lung_only + 0.55 * np.asarray(structure_colour("heart"))
    for colour in (lung_only, both):
        assert (np.abs(rgb - np.round(colour)).max(1) <= 2).any(), colour


def test_a_missed_structure_counts_against_the_means_and_is_reported(tmp_path):
    label = torch.from_numpy((_box((16, 16), (2, 2), (4, 4)) * 1 + _box((16, 16), (9, 9), (4, 4)) * 2).astype(np.float32))
    pred = torch.where(label == 2, 0.0, label)  # structure 2 missed
    handler = SegmentationReport(tmp_path, ["a", "b"], max_overlay_cases=0)
    handler.add({"label": label[None], "pred": pred[None]}, "case")
    handler.write()
    report = json.loads(open(handler.paths["json"]).read())
    assert report["mean"]["b"]["dice"] == 0.0 and report["mean"]["b"]["surface_dice"] == 0.0
    assert report["mean"]["b"]["missed"] == 1 and report["mean"]["a"]["missed"] == 0 and report["mean"]["b"]["hd95"] is None
    assert report["cases"][0]["missed"] == ["b"] and report["mean_dice"] == pytest.approx(0.5)


def test_a_falsely_predicted_structure_counts_against_the_means_and_is_reported(tmp_path):
    # case 1: both structures in truth and prediction; case 2: the truth has only "a", the prediction adds a few
    # voxels of "b"; case 3: neither has "b" (not scored for it)
    a, b = _box((16, 16), (2, 2), (4, 4)), _box((16, 16), (9, 9), (4, 4))
    both = torch.from_numpy((a * 1 + b * 2).astype(np.float32))[None]
    only_a = torch.from_numpy(a.astype(np.float32))[None]
    handler = SegmentationReport(tmp_path, ["a", "b"], max_overlay_cases=0)
    handler.add({"label": both, "pred": both}, "c1")
    handler.add({"label": only_a, "pred": torch.where(torch.from_numpy(b)[None], 2.0, only_a)}, "c2")
    handler.add({"label": only_a, "pred": only_a}, "c3")
    handler.write()
    report = json.loads(open(handler.paths["json"]).read())
    b_mean = report["mean"]["b"]
    assert b_mean["dice"] == pytest.approx(0.5) and b_mean["dice_n"] == 2  # (1 + 0) / 2: c3 not scored
    assert b_mean["false_positives"] == 1 and b_mean["missed"] == 0 and b_mean["hd95_n"] == 1
    assert report["cases"][1]["false_positives"] == ["b"] and report["cases"][2]["false_positives"] == []
    assert report["cases"][1]["dice"]["b"] == 0.0 and report["cases"][2]["dice"]["b"] is None
    assert report["mean_dice"] == pytest.approx((1.0 + 0.5) / 2)


def test_false_positives_of_a_volume_enter_the_means_the_csv_and_the_table(tmp_path):
    # 3 classes on 12^3 volumes at 2 mm (MetaTensor pixdim). "b" in c1: a 4^3 truth, predicted 4x4x3 inside it
    # (Dice 2*48/(64+48) = 6/7; every surface voxel within one voxel, 2 mm, of the other surface: surface Dice 1 at
    # 2 mm). c2: the truth lacks "b", the prediction holds 3 voxels of it (a false positive: Dice 0, surface Dice 0,
    # HD95 undefined). c3: "b" in neither (not scored).
    from unimiss_monai.report.sections.segmentation_tables import segmentation_table

    shape, affine = (12, 12, 12), torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    a, b = _box(shape, (1, 1, 1), (4, 4, 4)), _box(shape, (6, 6, 6), (4, 4, 4))
    vol = lambda m: MetaTensor(torch.from_numpy(m.astype(np.float32))[None], affine=affine)  # noqa: E731
    stray = np.zeros(shape, bool)
    stray[9, 1, 1:4] = True
    handler = SegmentationReport(tmp_path, ["a", "b"], tolerance=2.0, max_overlay_cases=0)
    handler.add({"label": vol(a * 1 + b * 2), "pred": vol(a * 1 + _box(shape, (6, 6, 6), (4, 4, 3)) * 2)}, "c1")
    handler.add({"label": vol(a * 1), "pred": vol(a * 1 + stray * 2)}, "c2")
    handler.add({"label": vol(a * 1), "pred": vol(a * 1)}, "c3")
    handler.write()
    report = json.loads(open(handler.paths["json"]).read())
    cells = {c["case"]: c for c in report["cases"]}
    assert cells["c1"]["dice"]["b"] == pytest.approx(6 / 7, abs=1e-6) and cells["c1"]["surface_dice"]["b"] == 1.0
    assert cells["c2"]["dice"]["b"] == 0.0 and cells["c2"]["surface_dice"]["b"] == 0.0 and cells["c2"]["hd95"]["b"] is None
    assert all(cells["c3"][m]["b"] is None for m in ("dice", "hd95", "surface_dice"))
    assert [cells[c]["false_positives"] for c in ("c1", "c2", "c3")] == [[], ["b"], []]
    b_mean = report["mean"]["b"]
    assert b_mean["dice"] == pytest.approx(3 / 7, abs=1e-6) and b_mean["dice_n"] == 2  # (6/7 + 0) / 2
    assert b_mean["surface_dice"] == 0.5 and b_mean["hd95_n"] == 1 and 0 < b_mean["hd95"] <= 2.0
    assert b_mean["false_positives"] == 1 and b_mean["missed"] == 0 and report["mean"]["a"]["false_positives"] == 0
    assert report["mean_dice"] == pytest.approx((1 + 3 / 7) / 2, abs=1e-6)
    rows = {(r["case"], r["structure"]): r for r in csv.DictReader(open(handler.paths["csv"]))}
    assert rows["c2", "b"] == {"case": "c2", "structure": "b", "dice": "0.0", "hd95": "", "surface_dice": "0.0"}
    assert rows["c3", "b"] == {"case": "c3", "structure": "b", "dice": "", "hd95": "", "surface_dice": ""}
    assert float(rows["mean", "b"]["dice"]) == pytest.approx(3 / 7, abs=1e-6)
    # the report's table: cases scored, missed and false positives per structure
    table = segmentation_table(tmp_path, "CT")[0]
    assert table.header[-3:] == ["cases", "missed", "false positives"]
    assert table.rows[1][0].startswith("b ") and table.rows[1][1] == "0.429" and table.rows[1][-3:] == ["2", "0", "1"]
    assert table.rows[0][-3:] == ["3", "0", "0"] and table.rows[-1][:2] == ["mean over structures", "0.714"]


def test_network_order_takes_the_affine_passed_without_warnings():
    import warnings

    from unimiss_monai.handlers.segmentation_report import _network_order

    volume = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    flip_x = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    # the volume carries an identity affine of its own; the report is told the file's affine, which flips x
    carried = MetaTensor(volume, affine=torch.eye(4, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (out,) = _network_order([carried], flip_x)
    (plain,) = _network_order([volume], flip_x)
    # RAS file axes flipped in x are L..., i.e. already left-positive: only the y axis turns to posterior
    expected = volume.flip(2).permute(0, 3, 1, 2)
    assert torch.equal(torch.as_tensor(out), expected) and torch.equal(torch.as_tensor(plain), expected)


def test_a_frontal_drr_is_scored_in_mm_along_both_of_its_axes(tmp_path):
    # a frontal DRR's rows run head to feet, along world z: its affine's first two rows hold nothing of that axis, and
    # MONAI's pixdim (the top-left 2x2 block) took that step as 1 mm; every CXR HD95 and surface Dice was off
    from unimiss_monai.drr import detector_affine

    shape = (40, 36)  # (X, Y): columns, rows
    row_first = detector_affine("AP", shape[::-1], (2.0, 1.5), 1000.0, 600.0, np.zeros(3))
    affine = torch.as_tensor(row_first[:, [1, 0, 2, 3]], dtype=torch.float64)  # column axis first, as stored
    assert MetaTensor(torch.zeros(1, *shape), affine=affine).pixdim[1] != pytest.approx(2.0)  # what was used
    import nibabel as nib  # an independent reading of the spacing: the zooms nibabel stores for that affine

    assert nib.Nifti1Image(np.zeros(shape, np.float32), affine.numpy()).header.get_zooms()[:2] == (1.5, 2.0)
    gt = _box(shape, (10, 10), (12, 12))
    pred = _box(shape, (10, 13), (12, 12))  # 3 rows further down: 3 x 2.0 mm
    onehot = lambda m: torch.stack([torch.from_numpy(~m), torch.from_numpy(m)]).float()
    handler = SegmentationReport(tmp_path, ["lung"], tolerance=2.0)
    case = handler.add({"label": MetaTensor(onehot(gt), affine=affine), "pred": MetaTensor(onehot(pred), affine=affine)})
    assert case["hd95"][0] == pytest.approx(6.0)


def test_a_picture_without_a_pixel_size_is_scored_in_pixels_and_says_so(tmp_path):
    # a PNG mask loads with an identity affine: its distances are pixels, which the report called mm
    import csv

    gt, pred = _box((40, 36), (10, 10), (12, 12)), _box((40, 36), (10, 14), (12, 12))
    onehot = lambda m: torch.stack([torch.from_numpy(~m), torch.from_numpy(m)]).float()
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))

    def item(name):
        meta = {"filename_or_obj": f"/data/{name}"}
        return {"label": MetaTensor(onehot(gt), affine=affine if name.endswith(".nii.gz") else torch.eye(4), meta=meta),
                "pred": MetaTensor(onehot(pred), affine=torch.eye(4))}

    handler = SegmentationReport(tmp_path / "png", ["lung"], tolerance=2.0)
    case = handler.add(item("a_mask.png"))
    assert case["distance_unit"] == "pixel" and case["hd95"][0] == pytest.approx(4.0)
    paths = write_segmentation_report(handler.cases, ["lung"], tmp_path / "png")
    assert json.loads(open(paths["json"]).read())["distance_unit"] == "pixel"
    nifti = handler.add(item("b_mask.nii.gz"))
    assert nifti["distance_unit"] == "mm" and nifti["hd95"][0] == pytest.approx(2.0)
    paths = write_segmentation_report(handler.cases, ["lung"], tmp_path / "mixed")
    report = json.loads(open(paths["json"]).read())
    assert report["distance_unit"] == "mixed" and report["mean"]["lung"]["hd95"] is None  # no mean of mm and pixels
    assert report["mean"]["lung"]["dice"] == pytest.approx(case["dice"][0])
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [r["distance_unit"] for r in rows] == ["pixel", "mm", "mixed"]


def test_cases_named_alike_by_their_files_are_named_by_their_paths_as_inference_names_them(tmp_path, monkeypatch,
                                                                                            caplog):
    """TotalSegmentator keeps one ``ct.nii.gz`` per case folder: the report named every row "label" (its label's file
    name), where CT segmentation inference names each output by its path (``s0001_ct``). Both name them alike now, in
    the JSON and in the overlay grid."""
    import json as _json

    import nibabel as nib

    from unimiss_monai.data.segmentation_inputs import find_segmentation_inputs
    from unimiss_monai.handlers import segmentation_report as module

    spatial = (12, 10, 8)
    # two cases in TotalSegmentator's layout, and one in the Decathlon's, its label of its image's name
    entries = [{"image": "s0001/ct.nii.gz", "label": "s0001/label.nii.gz"},
               {"image": "s0002/ct.nii.gz", "label": "s0002/label.nii.gz"},
               {"image": "imagesTs/case3.nii.gz", "label": "labelsTs/case3.nii.gz"}]
    for entry in entries:
        (tmp_path / "data" / entry["image"]).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.zeros(spatial, np.float32), np.eye(4)), str(tmp_path / "data" / entry["image"]))
    (tmp_path / "data" / "datalist.json").write_text(_json.dumps({"test": entries}))
    inferred = [c["name"] for c in find_segmentation_inputs(tmp_path / "data")]
    assert inferred == ["s0001_ct", "s0002_ct", "case3"]

    def item(entry):
        gt = _box(spatial, (2, 2, 2), (4, 4, 4)) * 1
        onehot = torch.nn.functional.one_hot(torch.from_numpy(gt).long(), 2).movedim(-1, 0).float()
        image_meta = {"filename_or_obj": str(tmp_path / "data" / entry["image"])}
        label_meta = {"filename_or_obj": str(tmp_path / "data" / entry["label"])}
        return {"image": MetaTensor(torch.rand(1, *spatial), meta=image_meta),
                "label": MetaTensor(onehot, meta=label_meta), "pred": MetaTensor(onehot.clone(), meta=label_meta)}

    drawn = []
    monkeypatch.setattr(module, "save_overlay_grid",
                        lambda views, names, path: drawn.extend(v[0] for v in views) or str(path))
    engine = Engine(lambda e, batch: batch)
    handler = SegmentationReport(tmp_path / "eval", ["lesion"], max_overlay_cases=2)
    handler.attach(engine)
    engine.run([[item(entries[0]), item(entries[1])], [item(entries[2])]], max_epochs=1)
    report = json.loads(open(handler.paths["json"]).read())
    assert [c["case"] for c in report["cases"]] == inferred and drawn == inferred[:2]
    # a file of a renamed case's name (s0001_ct.nii.gz beside the folders): no path tells the rows apart, so each is
    # numbered, and it is said
    entries.append({"image": "s0001_ct.nii.gz", "label": "labels/s0001_ct.nii.gz"})
    with caplog.at_level("WARNING", logger="unimiss_monai"):
        engine.run([[item(e) for e in entries]], max_epochs=1)
    assert "segmentation report: 1 name(s) stood for more than one case (s0001_ct), numbered" in caplog.text
    report = json.loads(open(handler.paths["json"]).read())
    assert [c["case"] for c in report["cases"]] == [*inferred, "s0001_ct_2"]
