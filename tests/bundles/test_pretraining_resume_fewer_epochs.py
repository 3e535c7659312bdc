"""``python -m monai.bundle run`` of the pretraining bundle with fewer ``--train#epochs`` than the checkpoint in its
``output_dir`` holds (a longer run, stopped or finished, rerun with the config's epochs) stops with one line naming the
file and the fix, not ignite's advice to set ``engine.state.max_epochs``, and keeps the file."""

from __future__ import annotations

import pytest
from bundle_runner import run_bundle_cli


@pytest.mark.slow
@pytest.mark.integration
def test_fewer_epochs_than_the_checkpoint_holds_are_refused_in_one_line(pretraining_samples, tmp_path):
    out = tmp_path / "out"
    common = {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(pretraining_samples), "output_dir": str(out),
              "train#num_workers": 0}
    first = run_bundle_cli("unimiss_pretraining", ["train.json", "smoke.yaml"], **common, **{"train#epochs": 2})
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = out / "checkpoints" / "checkpoint.pt"
    before = ckpt.read_bytes()
    proc = run_bundle_cli("unimiss_pretraining", ["train.json", "smoke.yaml"], **common, **{"train#epochs": 1})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "engine.state.max_epochs" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: cannot resume from {ckpt}: it holds 2 finished epoch(s) of 2, more than the 1 this run is set to; "
        "raise the epochs to at least 2 (--train#epochs; --max_epochs in the fine-tuning bundles) to continue it, or "
        "choose another --output_dir to start afresh"
    ], proc.stderr[-3000:]
    assert proc.stderr.rstrip().splitlines()[-1].startswith("(set UNIMISS_TRACEBACK=1")
    assert ckpt.read_bytes() == before
