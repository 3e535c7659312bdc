"""Checks shared by the two classification bundle tests (CT: exclusive classes, CXR: multi-label findings).

Training runs once per bundle through ``python -m monai.bundle run`` (a subprocess, the way users run it); the
evaluate and inference configs then run in-process through ``monai.bundle.ConfigWorkflow`` on that checkpoint. The
sample sets and the two ways of running a bundle come from ``tests/bundles/conftest.py``.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import torch

from bundle_runner import SCHEMA, configs, run_bundle_cli, run_workflow


def train_subprocess(bundle: str, samples_dir: Path, root: Path) -> subprocess.CompletedProcess:
    """Smoke training (one epoch) through the CLI; ``root`` becomes the bundle root (the smoke overlay's checkpoint in
    ``root/models/smoke``)."""
    root.mkdir(parents=True, exist_ok=True)
    return run_bundle_cli(bundle, ["train.json", "smoke.yaml"], dataset_dir=str(samples_dir), bundle_root=str(root), max_epochs=1)


def train_once(bundle: str, samples_dir: Path, root: Path) -> tuple[Path, Path]:
    """Smoke-train ``bundle`` once for a test module; fails with the run's output tail when training fails. A
    full-size model already in ``root/models`` stays as it was: the smoke run keeps to ``models/smoke``."""
    full_size = root / "models" / "model.pt"
    full_size.parent.mkdir(parents=True, exist_ok=True)
    full_size.write_bytes(b"the full-size model")
    result = train_subprocess(bundle, samples_dir, root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert full_size.read_bytes() == b"the full-size model" and not full_size.with_name("model.pt.prev").exists()
    return samples_dir, root


def run_evaluate(bundle: str, samples_dir: Path, root: Path, **overrides) -> dict:
    # evaluate.json overlays train.json and runs only validate#evaluator: MONAI's "eval" properties name the ids of an
    # inference config and its "train" ones the trainer, so neither property check applies (as for the segmenters)
    wf = run_workflow(bundle, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False,
                      dataset_dir=str(samples_dir), bundle_root=str(root), **overrides)
    return json.loads((Path(wf.parser.get_parsed_content("output_dir")) / "metrics.json").read_text())


def run_inference(bundle: str, input_dir: Path, root: Path, out: Path, **overrides) -> list[dict]:
    """Rows of ``predictions.csv``; ``failed=N`` expects N cases to fail (the run then ends with an error)."""
    run_workflow(bundle, ["inference.json", "smoke.yaml"], "infer", dataset_dir=str(input_dir),
                 bundle_root=str(root), output_dir=str(out), **overrides)
    with open(out / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_train_properties(bundle: str, samples_dir: Path, root: Path) -> None:
    wf = run_workflow(bundle, ["train.json", "smoke.yaml"], "train", run=False, dataset_dir=str(samples_dir), bundle_root=str(root))
    # the pieces MONAI Label's train task overrides
    for key in ("network", "train#dataset#data", "train#trainer#max_epochs", "ckpt_dir"):
        assert key in wf.parser


def load_model_state(root: Path) -> dict:
    """The smoke run's weights: ``models/smoke/model.pt`` is ``{"model": state_dict, "info": {...}}`` of plain
    tensors/values."""
    ckpt = torch.load(root / "models" / "smoke" / "model.pt", weights_only=True)
    assert set(ckpt) == {"model", "info"}
    assert ckpt["info"]["bundle"] in ("unimiss_ct_classification", "unimiss_cxr_classification") and ckpt["info"]["classes"]
    return ckpt["model"]


def check_metadata(bundle: str) -> None:
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=configs(bundle, "metadata.json")[0], filepath=str(SCHEMA))


def check_net_and_export(bundle: str, root: Path, input_shape: list[int]) -> None:
    """verify_net_in_out on the smoke network, then a traced TorchScript export that matches the eager model."""
    from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

    files = configs(bundle, "train.json", "smoke.yaml")
    meta = configs(bundle, "metadata.json")[0]
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=files, device="cpu")
    ts = root / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(root / "models" / "smoke" / "model.pt"), meta_file=meta,
                config_file=files, key_in_ckpt="model", use_trace=True, input_shape=input_shape)
    parser = ConfigParser()
    parser.read_config(files)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(load_model_state(root))
    net.eval()
    x = torch.rand(*input_shape)
    scripted = torch.jit.load(str(ts))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-4, atol=1e-5)


def check_rollout_png(bundle: str, image: Path, root: Path, tmp_path: Path) -> None:
    """Inference with ``saliency_method=rollout`` on one image writes one attention-rollout PNG and records it."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(image, inputs / image.name)
    out = tmp_path / "out"
    rows = run_inference(bundle, inputs, root, out, save_saliency=True, saliency_method="rollout")
    assert [r["status"] for r in rows] == ["ok"]
    pngs = list((out / "saliency").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:4] == b"\x89PNG" and pngs[0].stat().st_size > 1000
    report = json.loads((out / "predictions.json").read_text())
    assert report["saliency"] == "rollout" and report["cases"][0]["saliency"] == str(pngs[0])
