"""``python -m monai.bundle run`` of the pretraining bundle into an ``output_dir`` holding the checkpoint of another
network (the smoke overlay's, before the full recipe) stops with one line naming the file, and keeps the file."""

from __future__ import annotations

import pytest

from bundle_runner import run_bundle_cli


@pytest.mark.slow
@pytest.mark.integration
def test_a_checkpoint_of_another_width_is_refused_in_one_line(pretraining_samples, tmp_path):
    out = tmp_path / "out"
    common = {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(pretraining_samples), "output_dir": str(out),
              "train#epochs": 1}
    first = run_bundle_cli("unimiss_pretraining", ["train.json", "smoke.yaml"], **common)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = out / "checkpoints" / "checkpoint.pt"
    before = ckpt.read_bytes()
    # a wider head: the same keys, other shapes, as the full recipe after the smoke run
    proc = run_bundle_cli("unimiss_pretraining", ["train.json", "smoke.yaml"], **common, **{"head#hidden_dim": 128})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "size mismatch" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(f"error: cannot resume from {ckpt}: it holds another network"), errors[0]
    assert "in the checkpoint, " in errors[0] and "in this run's network" in errors[0]
    assert "another --output_dir" in errors[0]
    assert proc.stderr.rstrip().splitlines()[-1].startswith("(set UNIMISS_TRACEBACK=1")
    assert ckpt.read_bytes() == before
