"""Bundle ``unimiss_pretraining``: smoke runs of both recipes through ``monai.bundle``, MLflow tracking, properties,
metadata, errors, gloo DDP. Runs write under ``tmp_path`` (``bundle_root`` is overridden), never into ``bundles/``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "unimiss_pretraining"
CONFIGS = BUNDLE / "configs"
SCHEMA = REPO.parent / "shared" / "schema" / "meta_schema_20240725.json"


def _configs(*names: str) -> str:
    return "[" + ",".join(f"'{CONFIGS / n}'" for n in names) + "]"


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory) -> Path:
    from unimiss_monai.data.samples import samples

    return Path(samples(str(tmp_path_factory.mktemp("samples")), synthetic=True, only="pretraining"))


def _workflow(samples_dir: Path, out: Path, *overlays: str, tracking=None, **overrides):
    from monai.bundle import ConfigWorkflow

    overrides.setdefault("bundle_root", str(out / "bundle"))
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "train.json"), *(str(CONFIGS / o) for o in overlays)],
        workflow_type="train", tracking=tracking, dataset_dir=str(samples_dir), output_dir=str(out), **overrides,
    )
    wf.initialize()
    return wf


@pytest.fixture
def one_thread():
    # tiny networks on a shared 2-core machine: a second intra-op thread mostly waits (runs are several times slower)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def test_properties_and_wiring(samples_dir, tmp_path):
    wf = _workflow(samples_dir, tmp_path, "smoke.yaml")
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


def test_config_typo_names_the_wrong_id(samples_dir, tmp_path):
    wf = _workflow(samples_dir, tmp_path, "smoke.yaml", **{"train#trainer#optimizer": "@train#optimiser"})
    with pytest.raises(ValueError, match="train::optimiser"):
        wf.parser.get_parsed_content("train#trainer")


def test_missing_drr_and_empty_datalist_are_clear(tmp_path):
    from unimiss_monai.engines import load_pretraining_datalist

    (tmp_path / "ct.nii.gz").write_bytes(b"")
    (tmp_path / "datalist.json").write_text('{"ct": [{"image": "ct.nii.gz", "drr": "missing.nii.gz"}]}')
    with pytest.raises(FileNotFoundError, match=r"ct\[0\] drr file .*missing.nii.gz does not exist; render it or set drr_on_the_fly=true"):
        load_pretraining_datalist(tmp_path / "datalist.json")
    assert load_pretraining_datalist(tmp_path / "datalist.json", require_drr=False)["ct"][0]["image"].endswith("ct.nii.gz")
    (tmp_path / "datalist.json").write_text('{"ct": [], "xray": []}')
    with pytest.raises(ValueError, match="no 'ct' or 'xray' entries"):
        load_pretraining_datalist(tmp_path / "datalist.json")


def test_wrong_dimensionality_is_named():
    from unimiss_monai.engines import CheckSpatialDimsd

    with pytest.raises(ValueError, match="2-D image in the 'ct' section, which needs 3-D; move it to 'xray'"):
        CheckSpatialDimsd("image", 3, "ct")({"image": torch.zeros(1, 32, 32)})
    with pytest.raises(ValueError, match="3-D image in the 'xray' section, which needs 2-D; move it to 'ct'"):
        CheckSpatialDimsd("image", 2, "xray")({"image": torch.zeros(1, 8, 32, 32)})
    assert CheckSpatialDimsd("image", 2, "xray")({"image": torch.zeros(1, 32, 32, 1)})["image"].shape == (1, 32, 32)


@pytest.mark.slow
@pytest.mark.integration
def test_smoke_run_exports_teacher_backbone(samples_dir, tmp_path):
    out, bundle_root = tmp_path / "out", tmp_path / "unimiss_pretraining"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", _configs("train.json", "smoke.yaml"),
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--bundle_root", str(bundle_root), "--dataset_dir", str(samples_dir), "--output_dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # model-zoo layout: the backbone under <bundle_root>/models (where fine-tune bundles look), the training state
    # under <output_dir>/checkpoints
    assert not (out / "models").exists()
    sd = torch.load(bundle_root / "models" / "model.pt", weights_only=True)
    assert set(sd) == {"model"} and all(isinstance(v, torch.Tensor) for v in sd["model"].values())
    # the exported weights are the teacher backbone of the saved training checkpoint
    ckpt = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=False)
    teacher = {k[len("teacher.backbone."):]: v for k, v in ckpt["network"].items() if k.startswith("teacher.backbone.")}
    assert teacher.keys() == sd["model"].keys()
    assert all(torch.equal(teacher[k], sd["model"][k]) for k in teacher)
    assert ckpt["trainer"]["iteration"] == ckpt["trainer"]["epoch_length"] * 2
    assert (out / "loss_curves.png").stat().st_size > 1000
    # a fine-tune bundle beside it finds these weights by default
    from unimiss_monai.handlers import default_pretrained_path

    (tmp_path / "unimiss_cxr_segmentation").mkdir()
    assert default_pretrained_path(tmp_path / "unimiss_cxr_segmentation") == str((bundle_root / "models" / "model.pt").resolve())


@pytest.mark.slow
@pytest.mark.integration
def test_unimiss_recipe_smoke_trains_and_exports_a_loadable_mit(samples_dir, tmp_path, one_thread):
    from unimiss_monai.losses import CrossDimensionDINOLoss
    from unimiss_monai.networks import MiT, UniMissClassifier, UniMissSegmentation, load_pretrained, tiny_overrides

    wf = _workflow(samples_dir, tmp_path, "unimiss.yaml", "smoke.yaml")
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

    model_pt = tmp_path / "bundle" / "models" / "model.pt"
    exported = torch.load(model_pt, weights_only=True)["model"]
    tiny = tiny_overrides("mit_small")
    # fine-tune networks take one dimension: left over are the other dimension's layers (and, for the encoder-only
    # classifier, the decoder); missing are only their task heads (and the segmentation conv tail)
    for net, leftover in ((UniMissSegmentation(3, 1, 2, variant="mit_small", img_size=(16, 64, 64), **tiny), (".2d",)),
                          (UniMissClassifier(2, 3, 2, variant="mit_small", img_size=(64, 64), **tiny), (".3d", "decoder."))):
        report = load_pretrained(net, str(model_pt))
        assert report.checkpoint_variant == "mit_tiny" and not report.mismatched, report
        assert report.missing and all(k.startswith(("head.", "decoder.tail.")) for k in report.missing), report
        assert all(any(m in k for m in leftover) for k in report.unexpected), report
        state = net.state_dict()
        assert all(torch.equal(state[k], exported[k]) for k in report.matched)
    assert report.matched and not [k for k in report.missing if k.startswith("encoder.")]


@pytest.mark.slow
@pytest.mark.integration
def test_mlflow_tracking_logs_every_loss_term(samples_dir, tmp_path, one_thread):
    mlflow = pytest.importorskip("mlflow")
    from monai.utils import path_to_sqlite_uri

    uri = path_to_sqlite_uri(str(tmp_path / "mlruns.db"))
    # MONAI's built-in settings read `loss` from a decollated output: refused before training, naming the fix
    wf = _workflow(samples_dir, tmp_path / "builtin", "smoke.yaml", tracking="mlflow", tracking_uri=uri)
    with pytest.raises(RuntimeError, match="PretrainingTrainer") as err:  # the config parser wraps the ValueError
        wf.parser.get_parsed_content("train#trainer")
    assert isinstance(err.value.__cause__, ValueError) and "mlflow_tracking.json" in str(err.value.__cause__)

    wf = _workflow(samples_dir, tmp_path, "smoke.yaml", tracking=str(CONFIGS / "mlflow_tracking.json"), tracking_uri=uri)
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
def test_gloo_ddp_two_processes(samples_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "monai.bundle", "run",
           "--config_file", _configs("train.json", "smoke.yaml", "multi_gpu_train.json"),
           "--bundle_root", str(tmp_path / "bundle"), "--dataset_dir", str(samples_dir), "--output_dir", str(out),
           "--train#epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(tmp_path / "bundle" / "models" / "model.pt", weights_only=True)["model"]
