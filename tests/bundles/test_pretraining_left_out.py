"""A pretraining run with an unreadable sample among good ones trains on the rest, exports its backbone and then exits
non-zero naming the sample, through ``python -m monai.bundle run`` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "unimiss_pretraining" / "configs"


def _absolute(item: dict, root: Path) -> dict:
    return {k: str(root / v) if isinstance(v, str) else v for k, v in item.items()}


@pytest.mark.slow
@pytest.mark.integration
def test_a_run_that_left_out_a_sample_exports_then_fails_naming_it(pretraining_samples, tmp_path):
    root = pretraining_samples / "pretraining"
    datalist = json.loads((root / "datalist.json").read_text())
    broken = tmp_path / "data" / "broken_ct.nii.gz"
    broken.parent.mkdir()
    broken.write_bytes(b"not an image")
    ct = [_absolute(item, root) for item in datalist["ct"]]
    ct.insert(1, dict(ct[0], image=str(broken)))
    listed = {"ct": ct, "xray": [_absolute(item, root) for item in datalist["xray"]]}
    (tmp_path / "data" / "datalist.json").write_text(json.dumps(listed))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
           "[" + ",".join(f"'{CONFIGS / n}'" for n in ("train.json", "smoke.yaml")) + "]",
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--bundle_root", str(tmp_path / "bundle"), "--dataset_dir", str(tmp_path / "data"), "--output_dir", str(out),
           "--train#epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0, proc.stderr[-3000:]
    # the good samples were trained on and the backbone exported before the run failed
    assert torch.load(out / "models" / "model.pt", weights_only=True)["model"]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: the run finished and exported")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert str(broken) in errors[0] and "fix or remove them in the datalist" in errors[0]
    assert "Traceback" not in proc.stderr
