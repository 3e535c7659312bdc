"""The 3D CT classification bundle: smoke training, evaluation report, inference past bad files, export, metadata."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from classification_bundle_checks import (
    check_metadata,
    check_net_and_export,
    check_rollout_png,
    check_train_properties,
    load_model_state,
    run_evaluate,
    run_inference,
    train_once,
)

BUNDLE = "unimiss_ct_classification"
CLASSES = ["normal", "nodule", "mass"]
pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def trained(sample_set, tmp_path_factory):
    return train_once(BUNDLE, sample_set("ct_classification"), tmp_path_factory.mktemp("ct_cls") / "bundle")


def test_smoke_training_saves_best_model(trained):
    _, root = trained
    state = load_model_state(root)
    assert any(k.startswith("encoder.") for k in state) and any(k.startswith("head.") for k in state)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert any(p.name.startswith("events.out.tfevents") for p in (root / "eval").iterdir())


def test_train_workflow_properties(trained):
    samples_dir, root = trained
    check_train_properties(BUNDLE, samples_dir, root)


def test_evaluate_report(trained):
    samples_dir, root = trained
    metrics = run_evaluate(BUNDLE, samples_dir, root)
    assert metrics["num_cases"] == 6 and not metrics["multi_label"]
    assert [p["class"] for p in metrics["per_class"]] == CLASSES
    assert np.asarray(metrics["confusion_matrix"]).sum() == 6
    for name in ("roc.png", "confusion_matrix.png", "per_class.csv", "evaluation_predictions.csv"):
        assert (root / "eval" / name).stat().st_size > 0
    # the metrics, recomputed from the evaluation's own per-case file: accuracy of the arg-max, and each class's AUC
    # as the Mann-Whitney fraction of (positive, negative) pairs ranked right (ties count half)
    with open(root / "eval" / "evaluation_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    probs = np.array([[float(r[f"prob_{c}"]) for c in CLASSES] for r in rows])
    truth = np.array([[int(r[f"true_{c}"]) for c in CLASSES] for r in rows])
    assert len(rows) == 6 and (truth.sum(1) == 1).all()
    assert metrics["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == truth.argmax(1))), abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(np.trace(metrics["confusion_matrix"]) / 6, abs=1e-12)
    aucs = []
    for c, entry in enumerate(metrics["per_class"]):
        pos, neg = probs[truth[:, c] == 1, c], probs[truth[:, c] == 0, c]
        if not len(pos) or not len(neg):
            assert entry["auc"] is None
            continue
        pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
        aucs.append(sum(pairs) / len(pairs))
        assert entry["auc"] == pytest.approx(aucs[-1], abs=1e-9), entry["class"]
    assert aucs and metrics["macro_auc"] == pytest.approx(float(np.mean(aucs)), abs=1e-9)


def test_evaluate_with_an_empty_class_reports_undefined_auc(trained, tmp_path):
    samples_dir, root = trained
    data = samples_dir / "ct_classification"
    datalist = json.loads((data / "datalist.json").read_text())
    datalist["test"] = [d for d in datalist["test"] if d["label"] != "mass"]
    (data / "no_mass.json").write_text(json.dumps(datalist))
    metrics = run_evaluate(BUNDLE, samples_dir, root, datalist=str(data / "no_mass.json"), output_dir=str(tmp_path))
    mass = metrics["per_class"][2]
    assert mass["positives"] == 0 and mass["auc"] is None
    assert any("'mass'" in n and "undefined" in n for n in metrics["notes"])
    assert (tmp_path / "roc.png").exists()


def test_inference_keeps_going_past_bad_files(trained, tmp_path):
    samples_dir, root = trained
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for src in sorted((samples_dir / "ct_classification" / "images").glob("test_*.nii.gz"))[:3]:
        shutil.copy(src, inputs / src.name)
    (inputs / "broken.nii.gz").write_bytes(b"not a nifti file")
    from unimiss_monai.data.writers import save_nifti

    save_nifti(np.zeros((32, 32), np.int16), np.eye(4), inputs / "flat_2d.nii.gz")  # wrong dimensionality
    out = tmp_path / "out"
    rows = run_inference(BUNDLE, inputs, root, out, save_saliency=True, failed=2)
    status = {r["case"].split("/")[-1]: r["status"] for r in rows}
    assert len(rows) == 5 and sum(s == "ok" for s in status.values()) == 3
    assert status["broken.nii.gz"].startswith("failed:")
    assert "2D image" in status["flat_2d.nii.gz"] and "unimiss_cxr_classification" in status["flat_2d.nii.gz"]
    for r in rows:
        if r["status"] == "ok":
            probs = [float(r[f"prob_{c}"]) for c in CLASSES]
            assert sum(probs) == pytest.approx(1.0, abs=1e-4) and r["prediction"] == CLASSES[int(np.argmax(probs))]
    assert len(list((out / "saliency").glob("*.png"))) == 3
    assert json.loads((out / "predictions.json").read_text())["num_failed"] == 2


def test_inference_attention_rollout_png(trained, tmp_path):
    samples_dir, root = trained
    image = sorted((samples_dir / "ct_classification" / "images").glob("test_*.nii.gz"))[0]
    check_rollout_png(BUNDLE, image, root, tmp_path)


def test_net_in_out_and_torchscript_export(trained):
    _, root = trained
    check_net_and_export(BUNDLE, root, [1, 1, 16, 32, 32])


def test_metadata_schema():
    check_metadata(BUNDLE)


def test_inference_reads_a_dicom_series_as_its_nifti(trained, tmp_path):
    """A crop given as a DICOM series folder is one case, predicted as the same crop given as a NIfTI file."""
    import nibabel as nib

    from unimiss_monai.data.dicom_series import write_dicom_series
    from unimiss_monai.data.writers import save_nifti

    samples_dir, root = trained
    source = nib.load(sorted((samples_dir / "ct_classification" / "images").glob("test_*.nii.gz"))[0])
    hu = np.rint(np.asarray(source.dataobj, np.float32))  # whole HU, as a series stores them
    inputs = tmp_path / "inputs"
    save_nifti(hu, source.affine, inputs / "crop.nii.gz")
    write_dicom_series(hu, source.affine, inputs / "patient" / "crop_series")
    rows = run_inference(BUNDLE, inputs, root, tmp_path / "out", save_saliency=True)
    by_case = {r["case"].split("/")[-1]: r for r in rows}
    assert sorted(by_case) == ["crop.nii.gz", "crop_series"] and all(r["status"] == "ok" for r in rows)
    # the series' map is named by its path below the input folder, as its outputs are in every CT bundle
    assert sorted(p.name for p in (tmp_path / "out" / "saliency").iterdir()) == ["crop.png", "patient_crop_series.png"]
    for c in CLASSES:
        assert float(by_case["crop_series"][f"prob_{c}"]) == pytest.approx(float(by_case["crop.nii.gz"][f"prob_{c}"]),
                                                                           abs=1e-5)
