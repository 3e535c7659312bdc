"""Bundle ``unimiss_pretraining``: smoke run through ``monai.bundle run``, properties, metadata, errors, gloo DDP."""

from __future__ import annotations

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


def _workflow(samples_dir: Path, out: Path, *overlays: str, **overrides):
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "train.json"), *(str(CONFIGS / o) for o in overlays)],
        workflow_type="train", dataset_dir=str(samples_dir), output_dir=str(out), **overrides,
    )
    wf.initialize()
    return wf


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
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", _configs("train.json", "smoke.yaml"),
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--dataset_dir", str(samples_dir), "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sd = torch.load(out / "models" / "model.pt", weights_only=True)
    assert set(sd) == {"model"} and all(isinstance(v, torch.Tensor) for v in sd["model"].values())
    # the exported weights are the teacher backbone of the saved training checkpoint
    ckpt = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=False)
    teacher = {k[len("teacher.backbone."):]: v for k, v in ckpt["network"].items() if k.startswith("teacher.backbone.")}
    assert teacher.keys() == sd["model"].keys()
    assert all(torch.equal(teacher[k], sd["model"][k]) for k in teacher)
    assert ckpt["trainer"]["iteration"] == ckpt["trainer"]["epoch_length"] * 2
    assert (out / "loss_curves.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.integration
def test_gloo_ddp_two_processes(samples_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "monai.bundle", "run",
           "--config_file", _configs("train.json", "smoke.yaml", "multi_gpu_train.json"),
           "--dataset_dir", str(samples_dir), "--output_dir", str(out), "--train#epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(out / "models" / "model.pt", weights_only=True)["model"]
