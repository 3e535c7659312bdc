"""The unimiss_ct_segmentation bundle end to end on tiny synthetic phantoms: train (CLI and ConfigWorkflow), evaluate,
inference on the input grid, metadata/network checks, TorchScript export, bad inputs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from bundle_runner import BUNDLES, SCHEMA, configs, run_bundle_cli, run_workflow
from unimiss_monai.data import phantom_affine
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.sample_sets.ct_segmentation import make_organ_phantom
from unimiss_monai.inferers.openvino import openvino_available

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

NAME = "unimiss_ct_segmentation"
BUNDLE = BUNDLES / NAME
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")
# on top of smoke.yaml: 10 mm voxels and the smallest window the network accepts, so a run takes seconds
TINY = {"roi_size": [16, 32, 32], "pixdim": [10.0, 10.0, 10.0], "num_workers": 0, "max_epochs": 1}
TINY_NET = {
    "network_def#embed_dims": [16, 32, 32, 64], "network_def#num_heads": [1, 2, 2, 4],
    "network_def#decoder_num_heads": [2, 2, 1], "network_def#stem_channels": [8, 16],
}


@pytest.fixture(scope="module")
def sample_dir(sample_set):
    return str(sample_set("ct_segmentation"))


@pytest.fixture(scope="module")
def trained(sample_dir, tmp_path_factory):
    """One smoke epoch through ``python -m monai.bundle run``, as a user would start it; returns the bundle root, whose
    ``models/smoke`` holds the tiny model."""
    out = tmp_path_factory.mktemp("train_cli")
    full_size = out / "models" / "model.pt"  # a full-size model of the user's: a smoke run keeps to models/smoke
    full_size.parent.mkdir()
    full_size.write_bytes(b"the full-size model")
    proc = run_bundle_cli(NAME, ["train.json", "smoke.yaml"], bundle_root=str(out), dataset_dir=sample_dir,
                          output_dir=str(out / "train"), **TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert full_size.read_bytes() == b"the full-size model" and not full_size.with_name("model.pt.prev").exists()
    assert "val_mean_dice" in proc.stdout + proc.stderr
    return out


def test_train_cli_saves_best_model(trained):
    ckpt = torch.load(trained / "models" / "smoke" / "model.pt", map_location="cpu", weights_only=True)
    assert set(ckpt) == {"model", "info"} and ckpt["info"]["bundle"] == "unimiss_ct_segmentation"
    assert ckpt["info"]["settings"] == {"pixdim": TINY["pixdim"], "roi_size": TINY["roi_size"]}
    state = ckpt["model"]
    assert any(k.startswith("encoder.") for k in state) and any(k.startswith("decoder.") for k in state)


def _mean_foreground_dice(cases: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Dice of one-hot ``(C, ...)`` prediction and label maps, per case and foreground class whose label is not
    empty, averaged over all those (case, class) pairs (MeanDice's defaults, written out here)."""
    scores = []
    for pred, label in cases:
        for c in range(1, label.shape[0]):
            p, t = pred[c] > 0.5, label[c] > 0.5
            if t.any():
                scores.append(2.0 * (p & t).sum() / (p.sum() + t.sum()))
    return float(np.mean(scores))


def test_train_workflow_properties(sample_dir, tmp_path):
    """The run trains, exports, and the evaluator's best metric is the best mean foreground Dice of its validations,
    recomputed here from the label maps it scored."""
    from ignite.engine import Events

    wf = run_workflow(NAME, ["train.json", "smoke.yaml"], "train", run=False, bundle_root=str(tmp_path),
                      dataset_dir=sample_dir, output_dir=str(tmp_path), **TINY)
    assert len(wf.train_dataset_data) == 3 and set(wf.train_dataset_data[0]) == {"image", "label"}
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    validations: list[list[tuple[np.ndarray, np.ndarray]]] = []
    evaluator.add_event_handler(Events.EPOCH_STARTED, lambda e: validations.append([]))
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: validations[-1].extend(
        (np.asarray(o["pred"]), np.asarray(o["label"])) for o in e.state.output))
    wf.run()
    wf.finalize()
    assert (tmp_path / "models" / "smoke" / "model.pt").is_file()
    assert len(validations) == TINY["max_epochs"] and all(validations)
    dice = [_mean_foreground_dice(cases) for cases in validations]
    assert evaluator.state.best_metric == pytest.approx(max(dice), abs=1e-5), dice
    assert evaluator.state.best_metric_epoch == 1 + int(np.argmax(dice))


def test_train_with_deep_supervision(sample_dir, tmp_path):
    """``deep_supervision: true`` trains on all decoder levels; the evaluator still sees plain logits."""
    from unimiss_monai.losses import StackedDeepSupervisionLoss

    wf = run_workflow(NAME, ["train.json", "smoke.yaml"], "train", run=False, check=False, bundle_root=str(tmp_path),
                      dataset_dir=sample_dir, output_dir=str(tmp_path), deep_supervision=True, **TINY)
    trainer = wf.parser.get_parsed_content("train#trainer")
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    assert isinstance(trainer.loss_function, StackedDeepSupervisionLoss) and trainer.network.deep_supervision
    seen = {}
    def record_shape(module, inputs, output):  # returns None, so the output itself passes on unchanged
        seen.setdefault("train" if module.training else "eval", tuple(output.shape))

    trainer.network.register_forward_hook(record_shape)
    wf.run()
    wf.finalize()
    assert len(seen["train"]) == 6 and seen["train"][1] > 1 and seen["train"][2] == 10  # (B, 1 + K, C, Z, X, Y)
    assert len(seen["eval"]) == 5 and seen["eval"][1] == 10  # (B, C, Z, X, Y)
    assert trainer.state.output[0]["pred"].shape == (10, 16, 32, 32) and np.isfinite(trainer.state.output[0]["loss"])
    assert evaluator.state.output[0]["pred"].ndim == 4 and 0.0 <= evaluator.state.best_metric <= 1.0
    assert (tmp_path / "models" / "smoke" / "model.pt").is_file()


def test_evaluate_writes_report(sample_dir, trained, tmp_path):
    # the smoke overlay finds the tiny model in the bundle root's models/smoke, as the bundle's docs tell a user
    run_workflow(NAME, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False, bundle_root=str(trained),
                 dataset_dir=sample_dir, output_dir=str(tmp_path), **TINY)
    report = json.loads((tmp_path / "segmentation_report.json").read_text())
    assert report["num_cases"] == 2 and report["structures"][6] == "lung"
    assert all(0.0 <= c["dice"]["lung"] <= 1.0 for c in report["cases"])
    assert (tmp_path / "segmentation_report.csv").is_file() and (tmp_path / "segmentation_report.png").stat().st_size > 10_000
    # Dice only, as the label-efficiency study scores (the command line hands over the string "false")
    run_workflow(NAME, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False, bundle_root=str(trained),
                 dataset_dir=sample_dir, output_dir=str(tmp_path / "dice_only"), report_surface_metrics="false", **TINY)
    lean = json.loads((tmp_path / "dice_only" / "segmentation_report.json").read_text())
    assert [c["dice"] for c in lean["cases"]] == [c["dice"] for c in report["cases"]]
    assert all(v is None for c in lean["cases"] for v in c["hd95"].values())
    assert any(v is not None for c in report["cases"] for v in c["hd95"].values())


def test_evaluation_scores_the_label_map_inference_writes(sample_dir, trained, tmp_path):
    """Evaluation inverted the class probabilities onto the CT's grid and took their argmax there; inference writes
    the argmax taken on the network's grid, inverted with nearest neighbour. The Dice of the report was not the Dice
    of the file a user gets. Both stages run on the same case here; the report's Dice is the written file's."""
    import shutil

    from unimiss_monai.data.samples import find_dataset

    root = find_dataset(sample_dir, "ct_segmentation")
    with open(f"{root}/datalist.json") as f:
        item = json.load(f)["validation"][0]  # the split the evaluation scores by default
    image, label = f"{root}/{item['image']}", f"{root}/{item['label']}"
    run_workflow(NAME, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False, bundle_root=str(trained),
                 dataset_dir=sample_dir, output_dir=str(tmp_path / "eval"), **TINY)
    report = json.loads((tmp_path / "eval" / "segmentation_report.json").read_text())
    (scored,) = [c for c in report["cases"] if image.endswith(f"/{c['case']}.nii.gz")]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(image, folder / "case.nii.gz")
    run_workflow(NAME, ["inference.json", "smoke.yaml"], "infer", bundle_root=str(trained), dataset_dir=str(folder),
                 output_dir=str(tmp_path / "out"), **TINY)
    written = np.asarray(nib.load(tmp_path / "out" / "case_seg.nii.gz").dataobj)
    truth = np.asarray(nib.load(label).dataobj)
    for k, name in enumerate(report["structures"], start=1):
        a, b = written == k, truth == k
        if not (a.any() or b.any()):
            continue  # absent from both: the report's Dice is undefined there
        dice = 2 * float((a & b).sum()) / float(a.sum() + b.sum())
        assert scored["dice"][name] == pytest.approx(dice, abs=1e-5), name


def test_inference_on_input_grid_and_bad_cases(trained, tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    hu, _, _ = make_organ_phantom((30, 28, 20), (9.0, 9.0, 11.0), seed=7)
    affine = phantom_affine((9.0, 9.0, 11.0), (30, 28, 20), "LPS")
    affine[:3, 3] += (12.0, -7.0, 30.0)
    nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), data / "good.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((20, 20), np.int16), np.eye(4)), data / "flat.nii.gz")
    (data / "broken.nii.gz").write_bytes(b"not a nifti file")
    # the same CT as two nested DICOM exports whose folders share their names: each written under its path's name
    for patient in ("P1", "P2"):
        write_dicom_series(hu.astype(np.int16), affine, data / patient / "ST1" / "SE1")
    out = tmp_path / "out"
    run_workflow(NAME, ["inference.json", "smoke.yaml"], "infer", bundle_root=str(trained), dataset_dir=str(data),
                 output_dir=str(out), failed=2, **TINY)
    seg = nib.load(out / "good_seg.nii.gz")
    assert seg.shape == (30, 28, 20) and np.allclose(seg.affine, affine, atol=1e-4)
    assert set(np.unique(np.asarray(seg.dataobj))) <= set(range(10))
    series = [out / f"{p}_ST1_SE1_seg.nii.gz" for p in ("P1", "P2")]
    for path in series:
        assert np.allclose(nib.load(path).affine, affine, atol=1e-3)
        assert np.array_equal(np.asarray(nib.load(path).dataobj), np.asarray(seg.dataobj))
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(c["output"] for c in summary["cases"] if c["status"] == "ok") == sorted(
        map(str, [*series, out / "good_seg.nii.gz"]))
    failed = {c["case"].rsplit("/", 1)[-1]: c["reason"] for c in summary["cases"] if c["status"] == "failed"}
    assert set(failed) == {"flat.nii.gz", "broken.nii.gz"} and summary["num_failed"] == 2
    assert "segments 3D volumes" in failed["flat.nii.gz"]


def test_inference_at_other_settings_than_training_is_refused(trained, tmp_path):
    from unimiss_monai.utils.errors import root_cause

    # the weights fit the network at any spacing: only the recorded settings tell that 1.5 mm inputs are wrong here
    with pytest.raises(Exception) as err:
        run_workflow(NAME, ["inference.json", "smoke.yaml"], "infer", bundle_root=str(trained), output_dir=str(tmp_path),
                     **{**TINY, "pixdim": [1.5, 1.5, 2.5]})
    message = str(root_cause(err.value))
    assert "\n" not in message and "pixdim [10.0, 10.0, 10.0] (this run: [1.5, 1.5, 2.5])" in message
    assert "--pixdim [10.0,10.0,10.0]" in message and not list(tmp_path.iterdir())


@pytest.mark.skipif(not openvino_available(), reason="openvino is not installed (extra [openvino])")
def test_openvino_overlay_writes_the_plain_paths_labels(trained, tmp_path):
    """The weights the training run wrote, read by inference twice: plain ``inference.json``, and with the CPU and
    OpenVINO overlays (float32, through ``python -m monai.bundle run`` in a process of its own, so that OpenVINO never
    loads into the suite's). Both write a label map on the input grid, and the maps agree voxel for voxel up to float32
    rounding at class boundaries."""
    data = tmp_path / "in"
    data.mkdir()
    hu, _, affine = make_organ_phantom((30, 28, 20), (9.0, 9.0, 11.0), seed=3)
    nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), data / "ct.nii.gz")
    run_workflow(NAME, ["inference.json", "smoke.yaml"], "infer", bundle_root=str(trained), dataset_dir=str(data),
                 output_dir=str(tmp_path / "plain"), **TINY)
    proc = run_bundle_cli(NAME, ["inference.json", "smoke.yaml", "inference_cpu.yaml", "inference_openvino.yaml"],
                          bundle_root=str(trained), dataset_dir=str(data), output_dir=str(tmp_path / "openvino"),
                          cpu_bfloat16="false", **TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OpenVINOInferer: UniMissSegmentation traced, compiled for this CPU (f32" in proc.stdout + proc.stderr
    labels = {name: np.asarray(nib.load(tmp_path / name / "ct_seg.nii.gz").dataobj) for name in ("plain", "openvino")}
    assert labels["plain"].shape == labels["openvino"].shape == (30, 28, 20)
    assert len(np.unique(labels["plain"])) > 1
    assert (labels["plain"] == labels["openvino"]).mean() >= 0.999


def test_small_volume_is_padded_not_fatal(tmp_path):
    """A volume smaller than the training window still yields full-size crops."""
    hu, labels, affine = make_organ_phantom((12, 10, 6), (10.0, 10.0, 10.0), seed=3)
    nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "lab.nii.gz")
    parser = ConfigParser()
    parser.read_config(configs(NAME, "train.json", "smoke.yaml"))
    parser.update({**TINY, "bundle_root": str(BUNDLE)})
    crops = parser.get_parsed_content("train#preprocessing")({"image": str(tmp_path / "img.nii.gz"), "label": str(tmp_path / "lab.nii.gz")})
    assert tuple(crops[0]["image"].shape) == (1, 16, 32, 32) and tuple(crops[0]["label"].shape) == (1, 16, 32, 32)


def test_bad_training_inputs(tmp_path):
    hu, labels, affine = make_organ_phantom((20, 18, 16), (10.0, 10.0, 10.0), seed=3)
    parser = ConfigParser()
    parser.read_config(configs(NAME, "train.json", "smoke.yaml"))
    parser.update({**TINY, "bundle_root": str(BUNDLE)})
    pre = parser.get_parsed_content("train#preprocessing")
    nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), tmp_path / "img.nii.gz")
    cases = {
        "bad_values": (labels.astype(np.int16) * 12, affine),
        "bad_grid": (labels[:-2], affine),
        "bad_affine": (labels, affine @ np.diag([1.0, 1.0, 2.0, 1.0])),
    }
    messages = {"bad_values": "outside the declared classes 0..9", "bad_grid": "differs from image grid", "bad_affine": "label affine differs"}
    for name, (lab, aff) in cases.items():
        nib.save(nib.Nifti1Image(lab, aff), tmp_path / f"{name}.nii.gz")
        with pytest.raises(RuntimeError) as err:
            pre({"image": str(tmp_path / "img.nii.gz"), "label": str(tmp_path / f"{name}.nii.gz")})
        cause = err.value
        while cause.__cause__ is not None:
            cause = cause.__cause__
        assert messages[name] in str(cause) and f"{name}.nii.gz" in str(cause)


def test_pretrained_checkpoint_of_another_variant_is_refused(tmp_path):
    from unimiss_monai.handlers import load_pretrained_init
    from unimiss_monai.networks import UniMissSegmentation, tiny_overrides

    other = UniMissSegmentation(3, 1, 10, variant="mit_tiny", **tiny_overrides("mit_tiny"))
    torch.save({"model": other.encoder.state_dict()}, tmp_path / "mit_tiny.pt")
    ours = UniMissSegmentation(3, 1, 10, variant="mitplus", **tiny_overrides("mitplus"))
    with pytest.raises(ValueError, match=r"mit_tiny.pt: checkpoint looks like variant mit_tiny"):
        load_pretrained_init(ours, tmp_path / "mit_tiny.pt")


def test_metadata_and_network_contract(trained, tmp_path):
    verify_metadata(meta_file=META, filepath=str(SCHEMA))
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=configs(NAME, "train.json"), **TINY_NET)
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    names = ConfigParser.load_config_file(str(CONFIGS / "train.json"))["class_names"]
    assert list(meta["network_data_format"]["outputs"]["pred"]["channel_def"].values()) == ["background", *names]


def test_torchscript_export(trained, tmp_path):
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def", filepath=str(ts), ckpt_file=str(trained / "models" / "smoke" / "model.pt"), meta_file=META,
        config_file=configs(NAME, "train.json", "smoke.yaml"), key_in_ckpt="model", use_trace=True, input_shape=[1, 1, 16, 32, 32],
        bundle_root=str(BUNDLE), **TINY,
    )
    scripted = torch.jit.load(str(ts))
    parser = ConfigParser()
    parser.read_config(configs(NAME, "train.json", "smoke.yaml"))
    parser.update({**TINY, "bundle_root": str(BUNDLE)})
    net = parser.get_parsed_content("network_def")
    ckpt = torch.load(trained / "models" / "smoke" / "model.pt", weights_only=True)
    net.load_state_dict(ckpt["model"])
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net.eval()(x), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_toy_task_beats_chance():
    """The bundle's network and loss, trained briefly on phantoms, segment an unseen phantom far better than chance."""
    parser = ConfigParser()
    parser.read_config(configs(NAME, "train.json"))
    parser.update({**TINY_NET, "roi_size": [16, 32, 32], "bundle_root": str(BUNDLE), "device": "$torch.device('cpu')"})
    torch.manual_seed(0)  # one initialisation: a short run from another may still miss the liver
    net, loss_fn = parser.get_parsed_content("network_def"), parser.get_parsed_content("loss")

    def case(seed):  # RAS (X, Y, Z) -> the bundle's slices-first (Z, X, Y), HU / 1024 as the bundle maps it
        hu, labels, _ = make_organ_phantom((32, 32, 16), (10.0, 9.0, 15.0), seed=seed, noise_hu=10.0)
        to_zxy = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None, None]  # noqa: E731
        return to_zxy((hu / 1024).astype(np.float32)), to_zxy(labels.astype(np.int64))

    train = [case(s) for s in range(3)]
    x_val, y_val = case(11)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    for step in range(120):
        x, y = train[step % len(train)]
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(x_val).argmax(1)
    from unimiss_monai.metrics import compute_segmentation_metrics

    dice = np.array(compute_segmentation_metrics(pred, y_val[0], num_classes=10)["dice"])
    # chance: labels drawn independently with the classes' frequencies have expected Dice = that frequency
    freq = np.array([(y_val == k).float().mean().item() for k in range(1, 10)])
    big = freq >= 0.005  # classes of at least 0.5 % of the volume (lung, liver, ...)
    assert big.sum() >= 2
    assert np.nanmean(dice[big]) > freq[big].mean() + 0.4, (dice, freq)
