"""A pretraining run with an unreadable sample among good ones trains on the rest, exports its backbone and then exits
non-zero naming the sample, through ``python -m monai.bundle run`` as a user runs it, and under ``torchrun``, where
every process names it although only one of them drew it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from bundle_runner import run_bundle_cli


def _absolute(item: dict, root: Path) -> dict:
    return {k: str(root / v) if isinstance(v, str) else v for k, v in item.items()}


def _data_with_a_broken_ct(pretraining_samples: Path, folder: Path) -> Path:
    """A copy of the sample pretraining datalist (absolute paths) with an unreadable CT as its second item."""
    root = pretraining_samples / "pretraining"
    datalist = json.loads((root / "datalist.json").read_text())
    broken = folder / "broken_ct.nii.gz"
    folder.mkdir()
    broken.write_bytes(b"not an image")
    ct = [_absolute(item, root) for item in datalist["ct"]]
    ct.insert(1, dict(ct[0], image=str(broken)))
    listed = {"ct": ct, "xray": [_absolute(item, root) for item in datalist["xray"]]}
    (folder / "datalist.json").write_text(json.dumps(listed))
    return broken


def _run(tmp_path: Path, broken: Path, configs: tuple[str, ...], nproc: int = 0) -> subprocess.CompletedProcess:
    return run_bundle_cli("unimiss_pretraining", configs, nproc=nproc, master_port=29523, timeout=900,
                          bundle_root=str(tmp_path / "bundle"), dataset_dir=str(broken.parent),
                          output_dir=str(tmp_path / "out"), **{"train#epochs": 1})


def _check_failed_after_export(proc: subprocess.CompletedProcess, out: Path, broken: Path, processes: int) -> None:
    assert proc.returncode != 0, proc.stderr[-3000:]
    # the good samples were trained on and the backbone exported before the run failed
    assert torch.load(out / "models" / "model.pt", weights_only=True)["model"]
    errors = [line for line in proc.stderr.splitlines() if "error: the run finished and exported" in line]
    assert len(errors) == processes, proc.stderr[-3000:]
    assert all(str(broken) in e and "1 different sample(s)" in e and "fix or remove them" in e for e in errors)


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_that_left_out_a_sample_exports_then_fails_naming_it(pretraining_samples, tmp_path):
    broken = _data_with_a_broken_ct(pretraining_samples, tmp_path / "data")
    proc = _run(tmp_path, broken, ("train.json", "smoke.yaml"))
    _check_failed_after_export(proc, tmp_path / "out", broken, processes=1)
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_under_torchrun_every_process_names_the_sample_one_of_them_left_out(pretraining_samples, tmp_path):
    broken = _data_with_a_broken_ct(pretraining_samples, tmp_path / "data")
    proc = _run(tmp_path, broken, ("train.json", "smoke.yaml", "multi_gpu_train.json"), nproc=2)
    # the broken CT is drawn by one process; after the epoch's pooling both name it and both exit non-zero
    _check_failed_after_export(proc, tmp_path / "out", broken, processes=2)
