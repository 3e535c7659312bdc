"""A small synthetic run folder with every output the report reads, in the layout tools/demo.sh writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from unimiss_monai.report.steps import run_step

CXR = ["lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right"]
CT = ["liver", "spleen", "kidney_right", "kidney_left", "stomach", "pancreas", "lung", "heart", "aorta"]
TS = {"liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4, "stomach": 5, "pancreas": 6,
      "lung_upper_lobe_left": 7, "lung_lower_lobe_left": 8, "lung_upper_lobe_right": 9, "lung_middle_lobe_right": 10,
      "lung_lower_lobe_right": 11, "heart": 12, "aorta": 13, "vertebrae_T5": 14}


def _nifti(array, path: Path, spacing=(1.0, 1.0, 1.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def _json(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path


def _disc(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def _radiograph(rng, n=64) -> np.ndarray:
    """(X, Y) image: bright body, two dark lungs, a brighter heart, noise."""
    img = np.full((n, n), 0.6, np.float32)
    img[_disc((n, n), (20, 30), 12)] = 0.2
    img[_disc((n, n), (44, 30), 12)] = 0.2
    img[_disc((n, n), (36, 40), 8)] = 0.8
    return img + rng.normal(0, 0.03, (n, n)).astype(np.float32)


def make_run(root: Path) -> tuple[Path, Path]:
    """Write ``root/samples`` and ``root/run``; returns ``(run_dir, samples_dir)``."""
    rng = np.random.default_rng(0)
    samples, run = root / "samples", root / "run"
    _json({"datasets": {"cxr_segmentation": {"structures": CXR}}}, samples / "samples.json")
    # CXR: one held-out DRR with reference masks, its prediction (X, Y, 1, 5)
    n = 64
    masks = np.zeros((n, n, 1, 5), np.uint8)
    masks[..., 0, 0] = _disc((n, n), (44, 30), 12)  # the patient's left lung lies at larger X (image right)
    masks[..., 0, 1] = _disc((n, n), (20, 30), 12)
    masks[..., 0, 2] = _disc((n, n), (36, 40), 8)
    _nifti(_radiograph(rng, n), samples / "cxr_segmentation" / "inference" / "test_000.nii.gz")
    _nifti(masks, samples / "cxr_segmentation" / "labels" / "test_000.nii.gz")
    cxr = run / "unimiss_cxr_segmentation"
    _nifti(masks, cxr / "inference" / "test_000_seg.nii.gz")
    _json({"num_cases": 1, "num_ok": 1, "num_failed": 0, "cases": [
        {"case": str(samples / "cxr_segmentation" / "inference" / "test_000.nii.gz"), "status": "ok", "reason": "",
         "output": str(cxr / "inference" / "test_000_seg.nii.gz")}]}, cxr / "inference" / "summary.json")
    seg_report = lambda names: {"structures": names, "num_cases": 1, "cases": [],  # noqa: E731
                                "mean": {s: {"dice": 0.5 + 0.04 * i, "dice_n": 1, "hd95": 3.0 + i, "hd95_n": 1,
                                             "surface_dice": 0.6, "surface_dice_n": 1} for i, s in enumerate(names)}}
    _json(seg_report(CXR), cxr / "eval" / "segmentation_report.json")
    # CT: a 32^3 volume with organs, the reference label map (TotalSegmentator values) and a prediction
    shape = (32, 32, 24)
    ct = np.full(shape, -1000.0, np.float32)
    body = _disc(shape[:2], (16, 16), 14)[..., None] & np.ones(shape, bool)
    ct[body] = 40.0
    lungs = np.zeros(shape, np.uint8)
    lungs[_disc(shape, (10, 16, 14), 6)] = TS["lung_upper_lobe_right"]
    lungs[_disc(shape, (22, 16, 14), 6)] = TS["lung_upper_lobe_left"]
    lungs[_disc(shape, (16, 12, 12), 4)] = TS["heart"]
    lungs[_disc(shape, (12, 16, 5), 4)] = TS["liver"]
    ct[np.isin(lungs, [TS["lung_upper_lobe_right"], TS["lung_upper_lobe_left"]])] = -800.0
    ct += rng.normal(0, 10, shape).astype(np.float32)
    _nifti(ct, samples / "drr_generation" / "chest_ct.nii.gz", (2.0, 2.0, 3.0))
    _nifti(lungs, samples / "drr_generation" / "chest_ct_labels.nii.gz", (2.0, 2.0, 3.0))
    (samples / "drr_generation" / "chest_ct_labels.csv").write_text(
        "structure,id\n" + "".join(f"{k},{v}\n" for k, v in TS.items()))
    lut = np.zeros(32, np.uint8)
    lut[[TS["lung_upper_lobe_right"], TS["lung_upper_lobe_left"]]] = CT.index("lung") + 1
    lut[TS["heart"]], lut[TS["liver"]] = CT.index("heart") + 1, CT.index("liver") + 1
    cts = run / "unimiss_ct_segmentation"
    _nifti(lut[lungs], cts / "inference" / "chest_ct_seg.nii.gz", (2.0, 2.0, 3.0))
    _json({"num_cases": 1, "num_ok": 1, "num_failed": 0, "cases": [
        {"case": str(samples / "drr_generation" / "chest_ct.nii.gz"), "status": "ok", "reason": "",
         "output": str(cts / "inference" / "chest_ct_seg.nii.gz")}]}, cts / "inference" / "summary.json")
    _json(seg_report(CT), cts / "eval" / "segmentation_report.json")
    # DRRs: two views (W, H) with projected thickness (W, H, L)
    drr = run / "unimiss_drr_generation"
    names = {str(i): k for i, k in enumerate(TS)}
    thickness = np.zeros((n, n, len(TS)), np.float32)
    thickness[..., list(TS).index("lung_upper_lobe_left")] = 20 * masks[..., 0, 0]
    thickness[..., list(TS).index("lung_upper_lobe_right")] = 20 * masks[..., 0, 1]
    thickness[..., list(TS).index("heart")] = 30 * masks[..., 0, 2]
    for view in ("AP", "LAT_LEFT"):
        _nifti(_radiograph(rng, n), drr / "chest_ct" / f"chest_ct_{view}.nii.gz")
        _nifti(thickness, drr / "chest_ct" / f"chest_ct_{view}_labels.nii.gz")
    _json(names, drr / "chest_ct" / "chest_ct_labels.json")
    _json({"testing": [{"name": "chest_ct", "view": "AP", "image": "chest_ct/chest_ct_AP.nii.gz"}], "training": [],
           "failures": []}, drr / "datalist.json")
    # pretraining curves and probe
    it = np.arange(1, 41)
    curves = {k: [[int(i), float(v)] for i, v in zip(it, f(it))] for k, f in {
        "distill": lambda x: 5 - np.log(x), "reconstruction": lambda x: 0.2 / x ** 0.5,
        "loss": lambda x: 6 - np.log(x), "teacher_entropy": lambda x: 2 + 0.02 * x,
        "teacher_batch_entropy": lambda x: 2.1 + 0.02 * x, "center_norm": lambda x: np.sqrt(x)}.items()}
    pre = run / "unimiss_pretraining"
    _json(curves, pre / "loss_curves.json")
    _json([{"epoch": e, "iteration": 20 * e, "knn_accuracy": 0.1 + 0.05 * e, "k": 20, "temperature": 0.07,
            "num_items": 30, "num_classes": 5, "pixel_baseline": 0.4,
            "feature_maps": {f"stage{i}": 0.2 + 0.1 * e + 0.02 * i for i in range(1, 5)}} for e in (1, 2)],
          pre / "knn_probe.json")
    # classification: evaluation predictions + metrics, inference with saliency
    for bundle, classes, multi in (("cxr_classification", ["nodule", "cardiomegaly"], True),
                                   ("ct_classification", ["normal", "nodule", "mass"], False)):
        home = run / f"unimiss_{bundle}"
        truth = np.eye(len(classes))[np.arange(12) % len(classes)] if not multi else rng.integers(0, 2, (12, len(classes)))
        truth[0], truth[1] = 1, 0  # both positives and negatives in every class
        if not multi:
            truth[0], truth[1] = np.eye(len(classes))[0], np.eye(len(classes))[1]
        probs = np.clip(0.6 * truth + rng.uniform(0, 0.5, truth.shape), 0, 1)
        rows = ["name," + ",".join(f"prob_{c}" for c in classes) + "," + ",".join(f"true_{c}" for c in classes)]
        rows += [f"case{i}," + ",".join(f"{p:.4f}" for p in probs[i]) + "," + ",".join(str(int(t)) for t in truth[i])
                 for i in range(12)]
        (home / "eval").mkdir(parents=True)
        (home / "eval" / "evaluation_predictions.csv").write_text("\n".join(rows) + "\n")
        _json({"num_cases": 12, "multi_label": multi, "threshold": 0.5, "macro_auc": 0.8, "macro_ap": 0.7,
               "per_class": [{"class": c, "positives": int(truth[:, i].sum()), "negatives": int(12 - truth[:, i].sum()),
                              "auc": 0.8, "ap": 0.7, "sensitivity": 0.75, "specificity": 0.7} for i, c in enumerate(classes)]},
              home / "eval" / "metrics.json")
        sal = np.zeros((48, 48, 3), np.uint8)
        sal[..., 0] = np.linspace(0, 255, 48)[None, :]
        sal[10:30, 10:30, 1] = 200
        (home / "inference" / "saliency").mkdir(parents=True)
        Image.fromarray(sal).save(home / "inference" / "saliency" / f"test_000_{classes[1]}.png")
        _json({"class_names": classes, "saliency": "gradcam", "cases": [
            {"case": f"/x/test_000_{classes[1]}.png", "status": "ok", "probabilities": {c: 0.5 for c in classes},
             "saliency": str(home / "inference" / "saliency" / f"test_000_{classes[1]}.png")}]},
              home / "inference" / "predictions.json")
    # a label-efficiency study with its plot
    le = run / "label_efficiency"
    _json({"bundle": "unimiss_cxr_segmentation", "metric": "Dice", "seeds": [0, 1], "results": {
        "scratch": {"0.1": {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 2}},
        "pretrained": {"0.1": {"mean": 0.55, "ci_low": None, "ci_high": None, "n": 1}}},
        "paired_difference": {"0.1": {"arm": "pretrained", "mean": 0.05, "ci_low": -0.01, "ci_high": 0.11,
                                      "conclusion": "the interval includes 0"}}}, le / "label_efficiency.json")
    Image.fromarray(sal).save(le / "label_efficiency.png")
    # two recorded steps: a real (tiny) command each
    for name in ("samples", "pretraining"):
        assert run_step(run, name, [sys.executable, "-c", "pass"], outputs=[str(pre / "loss_curves.json")],
                        stage=name) == 0
    return run, samples
