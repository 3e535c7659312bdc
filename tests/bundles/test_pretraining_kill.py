"""Bundle ``unimiss_pretraining`` killed with ``kill -9`` mid-run and started again with the same command line finishes
with the weights of an uninterrupted run, bit for bit, and leaves no temporary file behind.

The runs go through ``python -m monai.bundle run`` (the smoke overlay on the synthetic pretraining set), as a user
starts them: the kill is a real ``SIGKILL`` of that process, wherever it lands (in a training step, or in the middle
of writing ``models/model.pt`` right after the checkpoint).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "unimiss_pretraining" / "configs"

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# 4 CT pairs in batches of 2: 2 iterations per epoch, so 5 epochs are 10 iterations. Saving every 5 iterations makes
# the only checkpoint before the final one a mid-epoch one (the first iteration of CT epoch 3): the restarted run has
# to resume inside an epoch, with the data positioned, and still has 5 iterations and 3 end-of-epoch probes to run.
EPOCHS, SAVE_EVERY = 5, 5
TMP_TAG = ".unimiss-tmp"  # every temporary name of unimiss_monai.data.writers holds it


# the UniMiSS+ recipe, and the intra-inter recipe (its queues, prototypes and stage schedule must resume too)
RECIPES = {"unimiss_plus": ("train.json", "smoke.yaml"), "intra_inter": ("train.json", "recipe_intra_inter.yaml", "smoke.yaml")}


def _command(samples_dir: Path, bundle_root: Path, output_dir: Path, recipe: str = "unimiss_plus") -> list[str]:
    """The smoke pretraining run as a user types it; only ``output_dir`` differs between the runs compared."""
    files = "[" + ",".join(f"'{CONFIGS / n}'" for n in RECIPES[recipe]) + "]"
    return [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", files,
        "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
        "--bundle_root", str(bundle_root), "--dataset_dir", str(samples_dir), "--output_dir", str(output_dir),
        "--train#epochs", str(EPOCHS), "--train#save_every", str(SAVE_EVERY), "--train#num_workers", "0",
        # drop-path draws from the global torch generator (the smoke overlay turns it off): the resumed run then needs
        # the generator state saved in the checkpoint, not only the data positions
        "--drop_path_rate", "0.1",
    ]


@pytest.fixture
def start():
    """``start(cmd, log)`` runs ``cmd`` in the background, output to ``log``; a run a failed test leaves is killed."""
    procs: list[subprocess.Popen] = []

    def run(cmd: list[str], log: Path) -> subprocess.Popen:
        # CPU only: bit-equal weights across runs need deterministic kernels; one thread each, so two runs share the
        # 2 cores. Output goes to a file: a full pipe would block the run while the test polls. A session of its own,
        # so a kill reaches the whole process group (loader workers included, should the command ever use them).
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        with open(log, "w") as out:
            procs.append(subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            ))
        return procs[-1]

    yield run
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    proc.wait(timeout=timeout)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


def _kill_after_first_checkpoint(proc: subprocess.Popen, ckpt: Path, log: Path, timeout: float = 300) -> None:
    """``SIGKILL`` the run's process group as soon as ``ckpt`` appears (it is renamed into place whole)."""
    deadline = time.monotonic() + timeout
    while not ckpt.exists():
        assert proc.poll() is None, f"the run ended before writing {ckpt}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {ckpt} after {timeout} s"
        time.sleep(0.02)
    assert proc.poll() is None, f"the run finished before the kill: raise EPOCHS\n{log.read_text()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if TMP_TAG in p.name)


def _assert_equal(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), what
    unequal = [k for k in want if not torch.equal(got[k], want[k])]
    assert not unequal, f"{what}: {len(unequal)} of {len(want)} tensors differ, e.g. {unequal[:5]}"


def _tensors(obj, prefix: str = "") -> dict:
    """Every tensor of a (nested) state dict, by dotted path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _tensors(value, f"{prefix}.{key}" if prefix else str(key)).items()}
    return {}


def _drop_phases(path: Path) -> None:
    """Rewrite loss curves as a version before the phases were recorded wrote them ([iteration, value]), and record
    the file as written, as that version did: the resumed run has to give the points their phases itself."""
    from unimiss_monai.data.output_ledger import record_written

    curves = json.loads(path.read_text())
    assert all(len(p) == 3 for values in curves.values() for p in values), curves
    path.write_text(json.dumps({k: [p[:2] for p in values] for k, values in curves.items()}))
    record_written(path, path.parent)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_kill_9_then_rerun_gives_the_uninterrupted_weights(pretraining_samples, tmp_path, start, recipe):
    reference, run = tmp_path / "reference", tmp_path / "run"
    bundle_root = tmp_path / "bundle"  # never the real bundle folder
    command = {out: _command(pretraining_samples, bundle_root, out, recipe) for out in (reference, run)}
    # the uninterrupted run alongside the one to kill: two single-threaded processes on two cores
    ref_proc = start(command[reference], tmp_path / "reference.log")
    ckpt = run / "checkpoints" / "checkpoint.pt"
    _kill_after_first_checkpoint(start(command[run], tmp_path / "killed.log"), ckpt, tmp_path / "killed.log")
    killed_at = torch.load(ckpt, weights_only=True)["trainer"]
    total = killed_at["epoch_length"] * EPOCHS
    assert killed_at["iteration"] == SAVE_EVERY and SAVE_EVERY % killed_at["epoch_length"] != 0, killed_at
    after_kill = _leftovers(run)  # usually the half-written models/model.pt: the kill follows the checkpoint closely
    if recipe == "intra_inter":  # as if the killed run were of a version before the phases were recorded
        _drop_phases(run / "loss_curves.json")

    out = _finish(start(command[run], tmp_path / "rerun.log"), tmp_path / "rerun.log")
    _finish(ref_proc, tmp_path / "reference.log")
    # it went on from the checkpoint (a fresh start with the same seed would give the same weights too)
    assert f"resumed from {ckpt} at iteration {SAVE_EVERY} " in out, out[-3000:]

    got, want = (torch.load(r / "checkpoints" / "checkpoint.pt", weights_only=True) for r in (run, reference))
    assert got["trainer"]["iteration"] == want["trainer"]["iteration"] == total
    assert got["trainer"]["optimizer_step"] == want["trainer"]["optimizer_step"] == total
    assert got.keys() == want.keys()
    for part in sorted(set(want) - {"trainer", "optimizer"}):
        # network (student and teacher, or the intra-inter net), heads, loss state (DINO centre, SwAV queues)
        _assert_equal(_tensors(got[part]), _tensors(want[part]), f"checkpoint {part}")
    assert got["optimizer"]["state"].keys() == want["optimizer"]["state"].keys()
    for i, state in want["optimizer"]["state"].items():
        _assert_equal(got["optimizer"]["state"][i], state, f"AdamW state of parameter {i}")

    got, want = (torch.load(r / "models" / "model.pt", weights_only=True) for r in (run, reference))
    assert set(got) == set(want) == {"model", "info"} and got["info"] == want["info"]
    _assert_equal(got["model"], want["model"], "models/model.pt")

    assert _leftovers(run) == [] and _leftovers(reference) == [], f"after the kill: {after_kill}"
    # the loss curves of the killed and resumed run are those of the uninterrupted one, every iteration once, the
    # phase of each included (for intra_inter, given to the points written without it before the kill where their
    # terms show it)
    curves = {r: json.loads((r / "loss_curves.json").read_text()) for r in (run, reference)}
    assert curves[run].keys() == curves[reference].keys() and "loss" in curves[run]
    assert [p[0] for p in curves[run]["loss"]] == list(range(1, total + 1))
    if recipe == "intra_inter":
        # the CT iterations 1-2, in the 2D stage, have the X-ray phase's terms alone, while CT iteration 5 (joint 3D
        # stage) has the 3D ones: their terms point to X-ray where the settings say CT, so they keep no phase
        curves[reference] = {k: [p[:2] if p[0] <= 2 else p for p in values] for k, values in curves[reference].items()}
        assert "give iteration 1 the ct phase where its terms, lacking the marks of that phase" in out, out[-3000:]
    assert curves[run] == curves[reference]
