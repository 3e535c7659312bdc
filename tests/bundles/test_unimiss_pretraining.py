"""Bundle ``unimiss_pretraining``: smoke runs of both recipes through ``monai.bundle``, on-the-fly DRRs, the DRR
bundle's datalist, colour DRRs, MLflow tracking, properties, metadata, errors, gloo DDP. Runs write under
``tmp_path`` (their ``output_dir``), never into ``bundles/``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "unimiss_pretraining"
CONFIGS = BUNDLE / "configs"
SCHEMA = REPO / "unimiss_monai" / "resources" / "meta_schema_20240725.json"  # the copy shipped in the package


def _configs(*names: str) -> str:
    return "[" + ",".join(f"'{CONFIGS / n}'" for n in names) + "]"


def _workflow(pretraining_samples: Path, out: Path, *overlays: str, tracking=None, **overrides):
    from monai.bundle import ConfigWorkflow

    overrides.setdefault("bundle_root", str(out / "bundle"))
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "train.json"), *(str(CONFIGS / o) for o in overlays)],
        workflow_type="train", tracking=tracking, dataset_dir=str(pretraining_samples), output_dir=str(out), **overrides,
    )
    wf.initialize()
    return wf


def _train(wf) -> list[dict]:
    """Run the workflow in process; return ``engine.state.output`` of every iteration."""
    from ignite.engine import Events

    trainer = wf.parser.get_parsed_content("train#trainer")
    outputs: list[dict] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    wf.run()
    wf.finalize()
    return outputs


def _epoch_means(outputs: list[dict], epoch_length: int) -> list[dict[str, float]]:
    epochs = [outputs[i : i + epoch_length] for i in range(0, len(outputs), epoch_length)]
    keys = lambda part: {k for o in part for k, v in o.items() if isinstance(v, float)}  # noqa: E731
    return [{k: sum(o[k] for o in part) / len(part) for k in keys(part)} for part in epochs]


def test_metadata_is_valid():
    pytest.importorskip("jsonschema")
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA))


def test_properties_and_wiring(pretraining_samples, tmp_path):
    wf = _workflow(pretraining_samples, tmp_path, "smoke.yaml")
    assert wf.check_properties() in (None, [])
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.max_epochs == 2 and trainer.state.epoch_length >= 1
    # AdamW groups: biases/norms (and the backbone's no-weight-decay names) without decay
    groups = trainer.optimizer.param_groups
    assert {g["weight_decay"] > 0 for g in groups} == {True, False}
    names = {id(p): n for n, p in wf.parser.get_parsed_content("network_def").student.named_parameters()}
    no_decay = [names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]]
    decayed = [names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert any(n.endswith(".bias") for n in no_decay) and not any(n.endswith(".bias") for n in decayed)


def test_config_typo_names_the_wrong_id(pretraining_samples, tmp_path):
    wf = _workflow(pretraining_samples, tmp_path, "smoke.yaml", **{"train#trainer#optimizer": "@train#optimiser"})
    with pytest.raises(ValueError, match="train::optimiser"):
        wf.parser.get_parsed_content("train#trainer")


def test_missing_drr_and_empty_datalist_are_clear(tmp_path):
    from unimiss_monai.data.pretraining_datalist import load_pretraining_datalist

    (tmp_path / "ct.nii.gz").write_bytes(b"")
    (tmp_path / "datalist.json").write_text('{"ct": [{"image": "ct.nii.gz", "drr": "missing.nii.gz"}]}')
    with pytest.raises(FileNotFoundError, match=r"ct\[0\] drr file .*missing.nii.gz does not exist; render it or set drr_on_the_fly=true"):
        load_pretraining_datalist(tmp_path / "datalist.json")
    assert load_pretraining_datalist(tmp_path / "datalist.json", require_drr=False)["ct"][0]["image"].endswith("ct.nii.gz")
    (tmp_path / "datalist.json").write_text('{"ct": [], "xray": []}')
    with pytest.raises(ValueError, match="no 'ct' or 'xray' entries"):
        load_pretraining_datalist(tmp_path / "datalist.json")
    # a whole-CT DRR run of unimiss_drr_generation has no CT-DRR pairs: the message says how to get them
    (tmp_path / "datalist.json").write_text('{"testing": [{"ct": "ct.nii.gz", "image": "ct_AP.nii.gz"}], "training": []}')
    with pytest.raises(ValueError, match="slab_depth > 0"):
        load_pretraining_datalist(tmp_path / "datalist.json")


def test_drr_bundle_layout_is_read_with_the_pretraining_one(tmp_path):
    from unimiss_monai.data.pretraining_datalist import load_pretraining_datalist

    for name in ("a.nii.gz", "a_AP.nii.gz", "b.nii.gz", "b_AP.nii.gz", "x.png"):
        (tmp_path / name).write_bytes(b"")
    pair = {"name": "a", "slab": 0, "start": 0, "stop": 12, "view": "AP", "ct": "a.nii.gz", "drr": "a_AP.nii.gz", "preview": "a_AP.png"}
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": [], "training": [pair], "failures": []}))
    data = load_pretraining_datalist(tmp_path / "datalist.json")
    assert data == {"ct": [{"image": str(tmp_path / "a.nii.gz"), "drr": str(tmp_path / "a_AP.nii.gz")}], "xray": []}
    # both layouts in one file
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [pair], "ct": [{"image": "b.nii.gz", "drr": "b_AP.nii.gz"}], "xray": ["x.png"]}))
    data = load_pretraining_datalist(tmp_path / "datalist.json")
    assert [Path(e["image"]).name for e in data["ct"]] == ["b.nii.gz", "a.nii.gz"] and len(data["xray"]) == 1
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [{"ct": "a.nii.gz"}]}))
    with pytest.raises(ValueError, match=r"training\[0\] needs 'ct' and 'drr'"):
        load_pretraining_datalist(tmp_path / "datalist.json")


def _parser(datalist_dir: Path, out: Path, *overlays: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), *(str(CONFIGS / o) for o in overlays)])
    parser.update({"dataset_dir": str(datalist_dir), "output_dir": str(out), **overrides})
    return parser


def test_colour_drr_becomes_its_luminance(pretraining_samples, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)  # rows x columns x RGB, unequal channels
    Image.fromarray(rgb).save(tmp_path / "drr.png")
    src = json.loads((pretraining_samples / "pretraining" / "datalist.json").read_text())["ct"][0]
    (tmp_path / "datalist.json").write_text(json.dumps({"ct": [{"image": str(pretraining_samples / "pretraining" / src["image"]), "drr": "drr.png"}]}))
    parser = _parser(tmp_path, tmp_path / "out", "smoke.yaml")
    item = parser.get_parsed_content("train#data")["ct"][0]
    from monai.transforms import Compose

    drr = Compose(parser.get_parsed_content("train#ct_files"))(item)["drr"]
    # PIL's "L" mode is ITU-R BT.601 luma rounded to integers: an independent reference
    grey = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    assert drr.shape == (1, 56, 40)  # (C, X, Y), as LoadImage reads a PNG
    np.testing.assert_allclose(drr[0].numpy(), grey.T, atol=0.5 + 1e-4)
    views = parser.get_parsed_content("train#dataset")[(0, 3)]
    assert "skipped" not in views and views["drr_view0"].shape == (3, 64, 64)


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _epoch_samples(trainer) -> list[tuple[float, float]]:
    from ignite.engine import Events

    counts: list[tuple[float, float]] = []
    # after the trainer's own EPOCH_COMPLETED handler, which sets the counts
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: counts.append((e.state.metrics["ct_samples"], e.state.metrics["xray_samples"])))
    return counts


@pytest.mark.slow
@pytest.mark.integration
def test_on_the_fly_drrs_train_ct_and_leave_the_bundle_folder_alone(pretraining_samples, tmp_path, one_thread):
    before = _tree(BUNDLE)
    # bundle_root is the real bundle folder, as in tools/demo.sh; everything the run writes goes to output_dir
    wf = _workflow(pretraining_samples, tmp_path / "out", "smoke.yaml", bundle_root=str(BUNDLE), drr_on_the_fly=True)
    trainer = wf.parser.get_parsed_content("train#trainer")
    counts = _epoch_samples(trainer)
    outputs = _train(wf)
    n_ct = len(json.loads((pretraining_samples / "pretraining" / "datalist.json").read_text())["ct"])
    # epoch 1 is the CT phase: every CT of the epoch was rendered and trained on; epoch 2 the X-rays
    assert counts == [(float(n_ct), 0.0), (0.0, float(n_ct))] and trainer.state.skipped_samples == 0
    assert all(math.isfinite(o["drr_distill"]) for o in outputs if o["phase"] == "ct")
    assert torch.load(tmp_path / "out" / "models" / "model.pt", weights_only=True)["model"]
    assert _tree(BUNDLE) == before


@pytest.mark.slow
@pytest.mark.integration
def test_trains_on_the_drr_bundles_datalist_as_written(sample_set, tmp_path, one_thread):
    from monai.bundle import ConfigWorkflow

    drr_bundle = REPO / "bundles" / "unimiss_drr_generation" / "configs"
    drr_out = tmp_path / "drrs"
    gen = ConfigWorkflow(config_file=str(drr_bundle / "inference.json"), meta_file=str(drr_bundle / "metadata.json"),
                         logging_file=False, workflow_type=None, dataset_dir=str(sample_set("drr_generation")),
                         output_dir=str(drr_out), views=["AP"], slab_depth=120, slab_detector_shape=[32, 32],
                         detector_shape=[24, 20], pixel_spacing=16.0, project_labels=False, progress=False)
    gen.initialize()
    gen.run()
    pairs = json.loads((drr_out / "datalist.json").read_text())["training"]
    assert pairs and {"ct", "drr"} <= set(pairs[0])

    wf = _workflow(drr_out, tmp_path / "out", "smoke.yaml", **{"train#epochs": 1})
    trainer = wf.parser.get_parsed_content("train#trainer")
    counts = _epoch_samples(trainer)
    _train(wf)
    assert counts == [(float(max(1, len(pairs) // 2) * 2), 0.0)] and trainer.state.skipped_samples == 0


@pytest.mark.slow
@pytest.mark.integration
def test_a_phase_with_no_readable_sample_fails_with_one_line(tmp_path):
    for name in ("ct0.nii.gz", "ct1.nii.gz", "drr0.nii.gz", "drr1.nii.gz"):
        (tmp_path / name).write_bytes(b"not an image")
    (tmp_path / "datalist.json").write_text(json.dumps({"ct": [{"image": f"ct{i}.nii.gz", "drr": f"drr{i}.nii.gz"} for i in range(2)]}))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", _configs("train.json", "smoke.yaml"),
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    # monai.bundle wraps it in "Failed to evaluate ConfigExpression"; the user sees its cause as one line
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: the ct phase")]
    assert errors, proc.stderr[-3000:]
    assert errors[0].startswith("error: the ct phase of epoch 1 trained on no sample")
    assert "Traceback" not in proc.stderr
    # the first failure as the damaged-file line says it: the file, what is wrong with it and the fix
    assert (f"; first failure: {tmp_path / 'ct'}" in errors[0]
            and ".nii.gz: is not a readable NIfTI file: it is not gzip-compressed" in errors[0]), errors[0]
    assert "teacher backbone" not in proc.stdout and not (tmp_path / "out" / "models").exists()


def test_wrong_dimensionality_is_named():
    """The sections' dimension checks, as the config builds them, say where the image belongs."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    ct_check, xray_check = (parser.get_parsed_content(i) for i in ("train#ct_files#1", "train#xray_preprocessing#1"))
    with pytest.raises(ValueError, match=r"a 2D image .* where a 3D one is needed; move it to the 'xray' section"):
        ct_check({"image": torch.zeros(1, 32, 32)})
    with pytest.raises(ValueError, match=r"a 3D image .* where a 2D one is needed; move it to the 'ct' section"):
        xray_check({"image": torch.zeros(1, 8, 32, 32)})
    # a PNG read by MONAI is (C, H, W, 1): the trailing singleton is dropped, not refused
    assert xray_check({"image": torch.zeros(1, 32, 32, 1)})["image"].shape == (1, 32, 32)


@pytest.mark.slow
@pytest.mark.integration
def test_smoke_run_exports_teacher_backbone(pretraining_samples, tmp_path):
    out, bundle_root = tmp_path / "out", tmp_path / "unimiss_pretraining"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", _configs("train.json", "smoke.yaml"),
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--bundle_root", str(bundle_root), "--dataset_dir", str(pretraining_samples), "--output_dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # everything under the run's output_dir: the backbone in models/, the training state in checkpoints/; nothing in
    # the bundle root (publishing it for the fine-tuning bundles is an explicit step)
    assert not (bundle_root / "models").exists()
    sd = torch.load(out / "models" / "model.pt", weights_only=True)
    assert set(sd) == {"model", "info"} and all(isinstance(v, torch.Tensor) for v in sd["model"].values())
    assert sd["info"]["variant"] == "mitplus" and list(sd["info"]["img_size3d"]) == [16, 64, 64]
    # the exported weights are the teacher backbone of the saved training checkpoint
    ckpt = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=True)
    teacher = {k[len("teacher.backbone."):]: v for k, v in ckpt["network"].items() if k.startswith("teacher.backbone.")}
    assert teacher.keys() == sd["model"].keys()
    assert all(torch.equal(teacher[k], sd["model"][k]) for k in teacher)
    assert ckpt["trainer"]["iteration"] == ckpt["trainer"]["epoch_length"] * 2
    assert (out / "loss_curves.png").stat().st_size > 1000
    assert str(out / "models" / "model.pt") in proc.stdout and "publish-pretrained" in proc.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_unimiss_recipe_smoke_trains_and_exports_a_loadable_mit(pretraining_samples, tmp_path, one_thread):
    from unimiss_monai.losses import CrossDimensionDINOLoss
    from unimiss_monai.networks import MiT, UniMissClassifier, UniMissSegmentation, load_pretrained, tiny_overrides

    wf = _workflow(pretraining_samples, tmp_path, "unimiss.yaml", "smoke.yaml")
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.recipe == "unimiss" and isinstance(trainer.loss_function, CrossDimensionDINOLoss)
    assert isinstance(wf.parser.get_parsed_content("backbone"), MiT) and trainer.slice_stride == 1
    outputs = _train(wf)

    n = trainer.state.epoch_length
    assert [o["phase"] for o in outputs] == ["ct"] * n + ["xray"] * n
    cross = ("volume", "slices_to_volume", "slices", "volume_to_slices")
    for o in outputs:
        terms = cross if o["phase"] == "ct" else ("distill",)
        assert all(math.isfinite(o[k]) for k in (*terms, "loss")), o
        assert o["loss"] == pytest.approx(sum(o[k] for k in terms), rel=1e-5)
    # every term reaches the logs: the curves file and the per-epoch metrics
    history = json.loads((tmp_path / "loss_curves.json").read_text())
    assert {*cross, "distill", "loss"} <= set(history)
    assert trainer.state.metrics["epoch/distill"] == pytest.approx(_epoch_means(outputs, n)[1]["distill"])

    model_pt = tmp_path / "models" / "model.pt"
    exported = torch.load(model_pt, weights_only=True)["model"]
    tiny = tiny_overrides("mit_small")
    # fine-tune networks take one dimension: left over are the other dimension's layers (and, for the encoder-only
    # classifier, the decoder); missing are only their task heads (and the segmentation conv tail)
    for net, leftover in ((UniMissSegmentation(3, 1, 2, variant="mit_small", img_size=(16, 64, 64), **tiny), (".2d",)),
                          (UniMissClassifier(2, 3, 2, variant="mit_small", img_size=(64, 64), **tiny), (".3d", "decoder."))):
        report = load_pretrained(net, str(model_pt))
        assert report.checkpoint_variant == "mit_small" and not report.mismatched, report
        assert report.missing and all(k.startswith(("head.", "decoder.tail.")) for k in report.missing), report
        assert all(any(m in k for m in leftover) for k in report.unexpected), report
        state = net.state_dict()
        assert all(torch.equal(state[k], exported[k]) for k in report.matched)
    assert report.matched and not [k for k in report.missing if k.startswith("encoder.")]


@pytest.mark.slow
@pytest.mark.integration
def test_mlflow_tracking_logs_every_loss_term(pretraining_samples, tmp_path, one_thread):
    mlflow = pytest.importorskip("mlflow")
    from monai.utils import path_to_sqlite_uri

    uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))
    # MONAI's built-in settings read `loss` from a decollated output: refused before training, naming the fix
    wf = _workflow(pretraining_samples, tmp_path / "builtin", "smoke.yaml", tracking="mlflow", tracking_uri=uri)
    with pytest.raises(RuntimeError, match="PretrainingTrainer") as err:  # the config parser wraps the ValueError
        wf.parser.get_parsed_content("train#trainer")
    assert isinstance(err.value.__cause__, ValueError) and "mlflow_tracking.json" in str(err.value.__cause__)

    wf = _workflow(pretraining_samples, tmp_path, "smoke.yaml", tracking=str(CONFIGS / "mlflow_tracking.json"), tracking_uri=uri)
    outputs = _train(wf)
    n = wf.parser.get_parsed_content("train#trainer").state.epoch_length
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("unimiss_pretraining").experiment_id])

    def history(key):
        return {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}

    # every term at every iteration it occurs: epoch 1 is CT (DINO, DRR and slice terms, two reconstructions),
    # epoch 2 X-ray (DINO and reconstruction)
    ct_terms = ["distill", "drr_distill", "slices_distill", "reconstruction", "reconstruction_drr"]
    for term in [*ct_terms, "loss", "teacher_entropy"]:
        want = {i + 1: o[term] for i, o in enumerate(outputs) if term in o}
        assert want and history(term) == pytest.approx(want), (term, history(term), want)
    assert set(history("drr_distill")) == set(range(1, n + 1))
    # and their epoch means
    means = _epoch_means(outputs, n)
    for epoch, terms in ((1, ct_terms), (2, ["distill", "reconstruction"])):
        for term in terms:
            assert history(f"epoch/{term}").get(epoch) == pytest.approx(means[epoch - 1][term]), (term, epoch)
    assert {"knn_accuracy", "epoch/teacher_entropy", "epoch/center_norm"} <= set(run.data.metrics)


@pytest.mark.slow
@pytest.mark.integration
def _rank_records_overlay(path: Path) -> Path:
    """A config overlay whose ``run`` trains, then has every rank save what it trained: its rank, the number of ranks,
    the trainer's epoch length and last epoch's sample counts, its CT sampler's draws, and its weights and loss state."""
    record = ("$torch.save({'rank': torch.distributed.get_rank(), 'world_size': torch.distributed.get_world_size(), "
              "'epoch_length': @train#trainer.state.epoch_length, 'samples': dict(@train#trainer.state.samples_trained), "
              "'draws': @train#ct_loader.sampler.draws(), 'network': @network_def.state_dict(), 'loss': @loss.state_dict()}, "
              "@output_dir + '/rank' + str(torch.distributed.get_rank()) + '.pt')")
    path.write_text(json.dumps({"run": ["$@train#trainer.run()", record]}))
    return path


def test_gloo_ddp_two_processes(pretraining_samples, tmp_path):
    """Two gloo ranks split each epoch's CT draws between them (half the single-process epoch each, no draw on both)
    and end with the same student, teacher and loss centre (DDP averages the gradients, the centre is all-reduced)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    overlay = _rank_records_overlay(tmp_path / "rank_records.json")
    config_files = _configs("train.json", "smoke.yaml", "multi_gpu_train.json")[:-1] + f",'{overlay}']"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "monai.bundle", "run",
           "--config_file", config_files,
           "--bundle_root", str(tmp_path / "bundle"), "--dataset_dir", str(pretraining_samples), "--output_dir", str(out),
           "--train#epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(out / "models" / "model.pt", weights_only=True)["model"]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 0's, none empty from rank 1

    from unimiss_monai.data import find_dataset

    n_ct = len(json.loads((Path(find_dataset(str(pretraining_samples), "pretraining")) / "datalist.json").read_text())["ct"])
    batch = 2  # train.json's train#batch_size
    assert n_ct // batch >= 2  # one process would have at least two iterations to split
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
    for r in ranks:
        assert r["epoch_length"] == n_ct // (2 * batch)  # half of one process's n_ct // batch
        assert r["samples"] == {"ct": r["epoch_length"] * batch, "xray": 0}
        assert len(r["draws"]) == r["epoch_length"] * batch
    # the two shares are disjoint and together one pass over the CT volumes
    assert sorted(i for r in ranks for i, _ in r["draws"]) == list(range(n_ct))
    for part in ("network", "loss"):
        a, b = (r[part] for r in ranks)
        assert a.keys() == b.keys() and a
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{part}: the ranks ended with different {different[:5]}"


def test_teacher_temperature_is_a_bundle_option():
    # the collapse monitor's advice names --teacher_temp: the trainer's schedule must follow it (0.04 by default)
    from monai.bundle import ConfigParser

    for given, expected in ((None, 0.04), (0.03, 0.03), ("0.07", 0.07)):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        if given is not None:
            parser["teacher_temp"] = given
        schedule = parser.get_parsed_content("train#trainer#teacher_temp_schedule")
        assert [schedule(e) for e in (0, 5)] == [expected, expected]
