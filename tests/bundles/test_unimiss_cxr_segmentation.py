"""The 2D chest X-ray segmentation bundle: smoke training (subprocess and ConfigWorkflow), evaluation report,
inference that keeps going past a bad file, metadata, network I/O, the loss, and clear errors for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from bundle_runner import BUNDLES, SCHEMA, run_bundle_cli, run_workflow

NAME = "unimiss_cxr_segmentation"
BUNDLE = BUNDLES / NAME
CONFIGS = BUNDLE / "configs"
SMOKE = str(CONFIGS / "smoke.yaml")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def samples(sample_set):
    return str(sample_set("cxr_segmentation"))


@pytest.fixture(scope="module")
def trained(samples, tmp_path_factory):
    """Smoke training through ConfigWorkflow (one epoch); returns the bundle root holding models/smoke/model.pt."""
    root = tmp_path_factory.mktemp("bundle")
    run_workflow(
        NAME, ["train.json", "smoke.yaml"], "train", bundle_root=str(root), dataset_dir=samples, max_epochs=1,
        **{"train#dataset#data": "$monai.data.load_decathlon_datalist(@datalist, True, 'training', base_dir=@data_root)[:4]"},
    )
    ckpt = torch.load(root / "models" / "smoke" / "model.pt", weights_only=True)
    assert ckpt["info"]["bundle"] == "unimiss_cxr_segmentation" and set(ckpt) == {"model", "info"}
    return root


@pytest.mark.slow
def test_smoke_training_through_monai_bundle_run(samples, tmp_path):
    result = run_bundle_cli(
        NAME, ["train.json", "smoke.yaml"], cwd=BUNDLE, timeout=300, bundle_root=str(tmp_path), dataset_dir=samples,
        max_epochs=1, **{"train#dataset#data": "$monai.data.load_decathlon_datalist(@datalist, True, 'training', base_dir=@data_root)[:2]"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_mean_dice" in result.stdout + result.stderr
    assert (tmp_path / "models" / "smoke" / "model.pt").is_file()


def test_evaluate_writes_per_structure_report(samples, trained):
    out = trained / "report"
    run_workflow(NAME, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False,
                 bundle_root=str(trained), dataset_dir=samples, output_dir=str(out))
    report = json.loads((out / "segmentation_report.json").read_text())
    assert report["structures"] == ["lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right"]
    assert report["num_cases"] == 2  # the synthetic test split
    assert (out / "segmentation_report.csv").is_file() and (out / "segmentation_report.png").stat().st_size > 0


def test_the_report_reads_the_model_and_split_that_evaluation_and_inference_record(samples, trained, tmp_path):
    """The seam between the bundle and the report: evaluation and inference record the checksum of the model they
    loaded, and evaluation the split it scored; the report reads them. A folder copied without its times (the model
    now newer than its scores) is not flagged; a model retrained in place after them is. Validation cases, which
    chose the checkpoint, are not called held out."""
    import shutil

    from unimiss_monai.data.samples import find_dataset
    from unimiss_monai.report.document import Table
    from unimiss_monai.report.run_folder import RunFolder, stale_notes
    from unimiss_monai.report.sections.summary import summary_section
    from unimiss_monai.utils.hashing import sha256_file

    home = tmp_path / NAME  # a demo run's layout: the report reads models/model.pt, eval/ and inference/
    (home / "models").mkdir(parents=True)
    model = home / "models" / "model.pt"
    shutil.copy(trained / "models" / "smoke" / "model.pt", model)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(os.path.join(find_dataset(samples, "cxr_segmentation"), "inference", "test_000.nii.gz"), folder)
    # the validation split: a report of it must not call it held out (the command is not recorded: no demo run)
    run_workflow(NAME, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False, bundle_root=str(trained),
                 dataset_dir=samples, output_dir=str(home / "eval"), ckpt_dir=str(home / "models"),
                 eval_split="validation")
    run_workflow(NAME, ["inference.json", "smoke.yaml"], "infer", check=False, bundle_root=str(trained),
                 dataset_dir=str(folder), output_dir=str(home / "inference"), ckpt_dir=str(home / "models"))
    for written in ("eval/segmentation_report.json", "inference/summary.json"):
        assert json.loads((home / written).read_text())["model_sha256"] == sha256_file(model), written
        os.utime(home / written, (1_000_000, 1_000_000))
    assert stale_notes(home) == {}
    (row,) = [b for b in summary_section(RunFolder(tmp_path, Path(samples))).blocks if isinstance(b, Table)][0].rows
    assert "validation DRRs" in row[1] and "held-out" not in row[1]
    state = torch.load(model, weights_only=True)
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, model)
    os.utime(model, (1_000_000 - 60, 1_000_000 - 60))  # older than the scores, as a copy may leave it
    assert set(stale_notes(home)) == {"eval", "inference"}


def test_inference_keeps_input_grid_and_survives_a_bad_file(samples, trained, tmp_path):
    from unimiss_monai.data.samples import find_dataset

    folder = tmp_path / "in"
    folder.mkdir()
    source = os.path.join(find_dataset(samples, "cxr_segmentation"), "inference", "test_000.nii.gz")
    original = nib.load(source)
    # a non-square input of another size: the prediction must come back on this grid
    data = np.asarray(original.dataobj)[:, :48]
    nib.save(nib.Nifti1Image(data, original.affine), str(folder / "cxr.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(folder / "ct_volume.nii.gz"))
    (folder / "P1" / "ST1").mkdir(parents=True)  # an archive's layout: read, and named like any other input
    nib.save(nib.Nifti1Image(data, original.affine), str(folder / "P1" / "ST1" / "IM1.nii.gz"))
    out = tmp_path / "out"
    run_workflow(NAME, ["inference.json", "smoke.yaml"], "infer", check=False, failed=1,
                 bundle_root=str(trained), dataset_dir=str(folder), output_dir=str(out))
    nested = nib.load(str(out / "P1_ST1_IM1_seg.nii.gz"))  # named by its path below the folder
    assert np.array_equal(np.asarray(nested.dataobj), np.asarray(nib.load(str(out / "cxr_seg.nii.gz")).dataobj))
    pred = nib.load(str(out / "cxr_seg.nii.gz"))
    assert pred.shape[:2] == data.shape and pred.shape[-1] == 5
    np.testing.assert_allclose(pred.affine, original.affine, atol=1e-4)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1}
    assert (out / "cxr_overlay.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_cases"] == 3 and summary["num_failed"] == 1
    failed = [c for c in summary["cases"] if c["status"] != "ok"]
    assert "ct_volume.nii.gz" in failed[0]["case"] and "3D volume" in failed[0]["reason"]


def test_checkpoint_of_another_variant_is_refused(trained):
    from unimiss_monai.handlers import load_pretrained_init
    from unimiss_monai.networks import UniMissSegmentation, tiny_overrides

    other = UniMissSegmentation(2, 3, 5, variant="mit_tiny", img_size=(64, 64), **tiny_overrides("mit_tiny"))
    with pytest.raises(ValueError, match="model.pt"):
        load_pretrained_init(other, trained / "models" / "smoke" / "model.pt", strict=True)


def test_metadata_and_network_io():
    from monai.bundle import verify_metadata, verify_net_in_out

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA))
    verify_net_in_out(net_id="network_def", meta_file=str(CONFIGS / "metadata.json"),
                      config_file=[str(CONFIGS / "train.json"), SMOKE], n=1, any=32,
                      **{"_meta_#network_data_format#inputs#image#spatial_shape": [64, 64],
                         "_meta_#network_data_format#outputs#pred#spatial_shape": [64, 64]})


def test_loss_is_dice_plus_bce():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    loss = parser.get_parsed_content("loss")
    logits = torch.randn(2, 5, 16, 16)
    target = (torch.rand(2, 5, 16, 16) > 0.5).float()
    p = torch.sigmoid(logits)
    inter, denom = (p * target).sum((2, 3)), p.sum((2, 3)) + target.sum((2, 3))
    dice = (1 - (2 * inter + 1e-5) / (denom + 1e-5)).mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(loss(logits, target), dice + bce, rtol=1e-5, atol=1e-5)


def test_builder_masks_are_consistent(samples):
    from unimiss_monai.data.samples import find_dataset

    root = find_dataset(samples, "cxr_segmentation")
    datalist = json.loads(open(os.path.join(root, "datalist.json")).read())
    assert {len(datalist[k]) for k in ("training", "validation", "test")} and datalist["structures"][0] == "lung_left"
    item = datalist["training"][0]
    image = nib.load(os.path.join(root, item["image"]))
    label = np.asarray(nib.load(os.path.join(root, item["label"])).dataobj)
    assert label.shape == (*image.shape, 1, 5) and set(np.unique(label)) <= {0, 1}
    # every structure is visible and the lungs are side by side: the patient's left appears on the image right (AP)
    assert (label.reshape(-1, 5).sum(0) > 0).all()
    cols = np.arange(label.shape[0])[:, None]
    left_x = (cols * label[..., 0, 0]).sum() / label[..., 0, 0].sum()
    right_x = (cols * label[..., 0, 1]).sum() / label[..., 0, 1].sum()
    assert left_x > right_x
    poses = json.loads(open(os.path.join(root, "poses.json")).read())
    test_angles = [poses[f"test_{i:03d}"]["rotation"][2] for i in range(len(datalist["test"]))]
    train_angles = [poses[f"training_{i:03d}"]["rotation"][2] for i in range(len(datalist["training"]))]
    assert all(3 <= abs(a) <= 6 for a in test_angles) and not any(3 < abs(a) < 6 for a in train_angles)


def test_inputs_of_one_stem_get_one_output_each(samples, trained, tmp_path):
    """A DRR (``x.nii.gz``, mm affine) beside its preview (``x.png``): two label maps, each on its own input's grid,
    and the summary says which file is whose, instead of the second overwriting the first's ``x_seg.nii.gz``."""
    from PIL import Image

    from unimiss_monai.data.samples import find_dataset

    folder = tmp_path / "in"
    folder.mkdir()
    original = nib.load(os.path.join(find_dataset(samples, "cxr_segmentation"), "inference", "test_000.nii.gz"))
    data = np.asarray(original.dataobj)
    nib.save(nib.Nifti1Image(data, original.affine), str(folder / "x.nii.gz"))
    grey = np.squeeze(data).astype(np.float64)
    grey = (255 * (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)).astype(np.uint8)
    Image.fromarray(grey[:40, :32].T).save(folder / "x.png")  # another size, so a mix-up cannot pass
    assert not np.allclose(original.affine, np.eye(4))  # the two inputs must differ in affine for this test to mean anything
    out = tmp_path / "out"
    run_workflow(NAME, ["inference.json", "smoke.yaml"], "infer", bundle_root=str(trained), dataset_dir=str(folder),
                 output_dir=str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_cases"] == 2 and summary["num_failed"] == 0
    outputs = {os.path.basename(c["case"]): c["output"] for c in summary["cases"]}
    assert set(outputs) == {"x.nii.gz", "x.png"}
    assert outputs["x.nii.gz"] != outputs["x.png"]
    assert os.path.basename(outputs["x.nii.gz"]) == "x_nii_gz_seg.nii.gz"
    assert os.path.basename(outputs["x.png"]) == "x_png_seg.nii.gz"
    assert not (out / "x_seg.nii.gz").exists()
    from_nifti, from_png = nib.load(outputs["x.nii.gz"]), nib.load(outputs["x.png"])
    np.testing.assert_allclose(from_nifti.affine, original.affine, atol=1e-4)
    assert from_nifti.shape[:2] == data.shape[:2] and from_png.shape[:2] == (40, 32)
    assert not np.allclose(from_png.affine, original.affine)
    assert (out / "x_nii_gz_overlay.png").is_file() and (out / "x_png_overlay.png").is_file()


def test_inference_on_a_drr_run_segments_each_drr_once(trained, tmp_path):
    """The seam from the DRR bundle: its output folder, given as ``dataset_dir``, is read by its datalist: one mask
    per DRR on the DRR's own grid, none for the previews (each DRR segmented twice) or the contact sheet (a figure of
    all views segmented as one radiograph)."""
    from unimiss_monai.data import make_ct_phantom, save_nifti
    from unimiss_monai.engines.drr_generation import DRRGenerator

    cts, drr = tmp_path / "cts", tmp_path / "drr"
    p = make_ct_phantom((32, 28, 20), noise_hu=0)
    save_nifti(p.hu, p.affine, cts / "ct01.nii.gz")
    DRRGenerator(cts, drr, views=["AP", "PA"], detector_shape=(40, 32), pixel_spacing=8.0, progress=False).run()
    out = tmp_path / "out"
    run_workflow(NAME, ["inference.json", "smoke.yaml"], "infer", bundle_root=str(trained), dataset_dir=str(drr),
                 output_dir=str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert [os.path.relpath(c["case"], drr) for c in summary["cases"]] == ["ct01/ct01_AP.nii.gz", "ct01/ct01_PA.nii.gz"]
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == ["ct01_AP_seg.nii.gz", "ct01_PA_seg.nii.gz"]
    for view in ("AP", "PA"):
        source = nib.load(str(drr / "ct01" / f"ct01_{view}.nii.gz"))
        np.testing.assert_allclose(nib.load(str(out / f"ct01_{view}_seg.nii.gz")).affine, source.affine, atol=1e-4)


def test_structures_in_another_order_than_the_model_learnt_are_refused(samples, trained, tmp_path):
    """The model's channels keep the order it was trained in: inference and evaluation given the structures in
    another order named the left lung's channel lung_right (legends, colours, per-structure scores), exit 0."""
    from unimiss_monai.utils.errors import root_cause

    folder = tmp_path / "in"
    folder.mkdir()
    swapped = ["lung_right", "lung_left", "heart", "clavicle_left", "clavicle_right"]
    for files, kind, where in ((["inference.json", "smoke.yaml"], "infer", folder),
                               (["train.json", "evaluate.json", "smoke.yaml"], "eval", samples)):
        out = tmp_path / kind
        with pytest.raises(Exception) as err:
            run_workflow(NAME, files, kind, check=False, bundle_root=str(trained), dataset_dir=str(where),
                         output_dir=str(out), structures=swapped)
        message = str(root_cause(err.value))
        assert "the same classes in another order" in message and "run this command with --structures " \
            "'[\"lung_left\", \"lung_right\", \"heart\", \"clavicle_left\", \"clavicle_right\"]'" in message, message
        assert not out.exists() or not any(out.iterdir())


def test_test_images_also_in_training_are_recorded_and_not_called_held_out_by_the_report(samples, trained, tmp_path):
    """Evaluation warned of test images listed in training too (and said nothing of those in validation, which chose
    the checkpoint), but recorded neither, and the report called their scores held out. The evaluation now records
    how many each split shares; the report reads it."""
    from unimiss_monai.data.samples import find_dataset
    from unimiss_monai.report.run_folder import RunFolder
    from unimiss_monai.report.sections.summary import summary_section

    root = Path(find_dataset(samples, "cxr_segmentation"))
    datalist = json.loads((root / "datalist.json").read_text())
    own = tmp_path / "own"  # the user's own data set: absolute paths, a training and a validation image under test
    own.mkdir()
    absolute = {split: [{k: str(root / v) for k, v in item.items()} for item in datalist[split]]
                for split in ("training", "validation", "test")}
    absolute["test"] = absolute["test"][:1] + absolute["training"][:1] + absolute["validation"][:1]
    (own / "datalist.json").write_text(json.dumps(absolute))
    home = tmp_path / "run" / NAME
    run_workflow(NAME, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False, bundle_root=str(trained),
                 dataset_dir=str(own), output_dir=str(home / "eval"))
    report = json.loads((home / "eval" / "segmentation_report.json").read_text())
    assert report["split"] == "test" and report["shared_with"] == {"training": 1, "validation": 1} and report["num_cases"] == 3
    (row,) = [b for b in summary_section(RunFolder(tmp_path / "run")).blocks if hasattr(b, "rows")][0].rows
    assert row[1] == ("Dice, 3 test images (1 in the training split and 1 in the validation split too, so not held "
                      "out)"), row
