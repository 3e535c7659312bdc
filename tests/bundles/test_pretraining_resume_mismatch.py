"""``python -m monai.bundle run`` of the pretraining bundle into an ``output_dir`` whose checkpoint this run cannot
continue stops with one line naming the file and the fix, and keeps the file: the checkpoint of another network (the
smoke overlay's, before the full recipe), or of more epochs than the run is set to (a longer run rerun with the
config's epochs; ignite's own advice, to set ``engine.state.max_epochs``, is not a bundle user's)."""

from __future__ import annotations

import pytest

from bundle_runner import run_bundle_cli


def _refused_rerun(pretraining_samples, tmp_path, first: dict, second: dict, internal: str) -> tuple[str, str]:
    """A smoke run with overrides ``first``, then one with ``second`` into the same ``output_dir``: that second run's
    one ``error:`` line (the run failed, with no traceback and no text ``internal``, and the checkpoint is kept)."""
    out = tmp_path / "out"
    common = {"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(pretraining_samples), "output_dir": str(out),
              "train#num_workers": 0}
    done = run_bundle_cli("unimiss_pretraining", ["train.json", "smoke.yaml"], **common, **first)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = out / "checkpoints" / "checkpoint.pt"
    before = ckpt.read_bytes()
    proc = run_bundle_cli("unimiss_pretraining", ["train.json", "smoke.yaml"], **common, **second)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and internal not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert proc.stderr.rstrip().splitlines()[-1].startswith("(set UNIMISS_TRACEBACK=1")
    assert ckpt.read_bytes() == before
    return errors[0], str(ckpt)


@pytest.mark.slow
@pytest.mark.integration
def test_a_checkpoint_of_another_width_is_refused_in_one_line(pretraining_samples, tmp_path):
    # a wider head: the same keys, other shapes, as the full recipe after the smoke run
    error, ckpt = _refused_rerun(pretraining_samples, tmp_path, {"train#epochs": 1},
                                 {"train#epochs": 1, "head#hidden_dim": 128}, "size mismatch")
    assert error.startswith(f"error: cannot resume from {ckpt}: it holds another network"), error
    assert "in the checkpoint, " in error and "in this run's network" in error and "another --output_dir" in error


@pytest.mark.slow
@pytest.mark.integration
def test_fewer_epochs_than_the_checkpoint_holds_are_refused_in_one_line(pretraining_samples, tmp_path):
    error, ckpt = _refused_rerun(pretraining_samples, tmp_path, {"train#epochs": 2}, {"train#epochs": 1},
                                 "engine.state.max_epochs")
    assert error == (
        f"error: cannot resume from {ckpt}: it holds 2 finished epoch(s) of 2, more than the 1 this run is set to; "
        "raise the epochs to at least 2 (--train#epochs; --max_epochs in the fine-tuning bundles) to continue it, or "
        "choose another --output_dir to start afresh"
    )
