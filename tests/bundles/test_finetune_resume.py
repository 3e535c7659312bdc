"""Fine-tuning never loses a good model: a run killed with ``kill -9`` (or stopped by SIGTERM, as a scheduler stops a
job) resumes from its last epoch checkpoint to the weights of an uninterrupted run, ``models/model.pt`` changes only
when a run finishes (the previous one kept as ``model.pt.prev``), and a batch that makes the loss NaN stops the run,
naming its files, before anything is saved."""

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
from bundle_runner import REPO, configs, run_workflow

from unimiss_monai.utils.errors import root_cause
from unimiss_monai.utils.stop_signal import TERMINATED

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]

# injected through ``train#trainer#train_handlers``: stops the run right after an iteration, mid-epoch
STOP_MODULE = '''
import time
from pathlib import Path
from ignite.engine import Events


class StopAt:
    def __init__(self, iteration, marker, mode="pause"):
        self.iteration, self.marker, self.mode = iteration, Path(marker), mode

    def attach(self, engine):
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=self.iteration), self)

    def __call__(self, engine):
        self.marker.write_text(str(engine.state.iteration))
        if self.mode == "raise":
            raise RuntimeError("simulated kill")
        time.sleep(600)  # until the test kills the process
'''

# injected the same way: writes the iteration a run starts with (its first ITERATION_STARTED) to a file
FIRST_MODULE = '''
from pathlib import Path
from ignite.engine import Events


class FirstIteration:
    def __init__(self, path):
        self.path = Path(path)

    def attach(self, engine):
        engine.add_event_handler(Events.STARTED, lambda e: self.path.unlink(missing_ok=True))
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine):
        if not self.path.exists():
            self.path.write_text(str(engine.state.iteration))
'''

# bundle -> (sample set, iteration to stop after: the first of epoch 2 or later, never an epoch's last, the signal)
KILLED = {"unimiss_cxr_segmentation": ("cxr_segmentation", 6, signal.SIGKILL),
          "unimiss_cxr_classification": ("cxr_classification", 3, signal.SIGTERM)}
INTERRUPTED = {"unimiss_ct_segmentation": ("ct_segmentation", 4), "unimiss_ct_classification": ("ct_classification", 4)}
EPOCHS = 3


def _stop_override(module_dir: Path, iteration: int, marker: Path, mode: str) -> dict:
    """Config entries adding ``StopAt`` to the trainer's handlers (its module written to ``module_dir``)."""
    (module_dir / "stop_at.py").write_text(STOP_MODULE)
    return {"stop_at": {"_target_": "stop_at.StopAt", "iteration": iteration, "marker": str(marker), "mode": mode},
            "train#trainer#train_handlers": "$@train#handlers + [@stop_at]"}


def _first_iteration_override(module_dir: Path, path: Path) -> dict:
    """Config entries adding ``FirstIteration`` (writing to ``path``) to the trainer's handlers."""
    (module_dir / "first_iteration.py").write_text(FIRST_MODULE)
    return {"first_iteration": {"_target_": "first_iteration.FirstIteration", "path": str(path)},
            "train#trainer#train_handlers": "$@train#handlers + [@first_iteration]"}


def _paths(root: Path) -> dict[str, Path]:
    return {"output_dir": root / "out", "ckpt_dir": root / "models"}


def _start(bundle: str, root: Path, samples: Path, module_dir: Path, extra: dict | None = None) -> subprocess.Popen:
    """``python -m monai.bundle run`` of the smoke training, as a user starts it (and restarts it: same arguments);
    ``extra`` config entries go in one more config file."""
    args = {"bundle_root": str(root), "dataset_dir": str(samples), "max_epochs": EPOCHS, **{k: str(v) for k, v in _paths(root).items()}}
    files = configs(bundle, "train.json", "smoke.yaml")
    if extra:
        files.append(str(module_dir / "extra.json"))
        (module_dir / "extra.json").write_text(json.dumps(extra))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files),
           "--meta_file", configs(bundle, "metadata.json")[0], "--logging_file", configs(bundle, "logging.conf")[0]]
    for key, value in args.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(module_dir), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def _previous_model(root: Path) -> bytes:
    """A good model of an earlier run in ``ckpt_dir``; returns its bytes."""
    path = _paths(root)["ckpt_dir"] / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.ones(2)}, "info": {"bundle": "earlier run"}}, path)
    return path.read_bytes()


def _state(root: Path) -> tuple[dict, dict]:
    """The final training state (``checkpoint.pt``) and the published best model of the run in ``root``."""
    ckpt = torch.load(_paths(root)["output_dir"] / "checkpoints" / "checkpoint.pt", weights_only=True)
    best = torch.load(_paths(root)["ckpt_dir"] / "model.pt", weights_only=True)
    return ckpt, best


def _assert_same(resumed: dict, reference: dict) -> None:
    assert resumed.keys() == reference.keys()
    for k in reference:
        torch.testing.assert_close(resumed[k], reference[k], rtol=0, atol=0, msg=k)


def _check_interrupted(root: Path, stop: int, before: bytes) -> int:
    """After the interruption: the last checkpoint is an epoch end before ``stop``, and ``model.pt`` is untouched."""
    trainer = torch.load(_paths(root)["output_dir"] / "checkpoints" / "checkpoint.pt", weights_only=True)["trainer"]
    assert 0 < trainer["iteration"] < stop and trainer["iteration"] % trainer["epoch_length"] == 0
    assert stop % trainer["epoch_length"] != 0  # stopped mid-epoch
    model = _paths(root)["ckpt_dir"] / "model.pt"
    assert model.read_bytes() == before and not model.with_name("model.pt.prev").exists()
    assert (_paths(root)["output_dir"] / "checkpoints" / "best_model.pt").is_file()  # the run's own best so far
    return trainer["iteration"]


def _check_resumed(root: Path, reference_root: Path, before: bytes, resumed_at: int) -> None:
    (ckpt, best), (ref_ckpt, ref_best) = _state(root), _state(reference_root)
    assert ckpt["trainer"]["iteration"] == ref_ckpt["trainer"]["iteration"] > resumed_at
    _assert_same(ckpt["network"], ref_ckpt["network"])
    _assert_same(ckpt["optimizer"]["state"], ref_ckpt["optimizer"]["state"])
    # the same best score; the files' SHA-256 differ (torch names an archive's records after its temporary file)
    assert ckpt["best_model"]["_saved"] == ref_ckpt["best_model"]["_saved"] and best["info"] == ref_best["info"]
    _assert_same(best["model"], ref_best["model"])
    assert (_paths(root)["ckpt_dir"] / "model.pt.prev").read_bytes() == before


@pytest.mark.parametrize("bundle", sorted(KILLED))
def test_killed_run_resumes_to_the_uninterrupted_weights(bundle, sample_set, tmp_path):
    data, stop, stop_signal = KILLED[bundle]
    samples = sample_set(data)
    reference = tmp_path / "reference"
    _finish(_start(bundle, reference, samples, tmp_path))

    run, marker = tmp_path / "run", tmp_path / "stopped"
    before = _previous_model(run)
    proc = _start(bundle, run, samples, tmp_path, _stop_override(tmp_path, stop, marker, "pause"))
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the run never reached the stop iteration"
        time.sleep(0.2)
    proc.send_signal(stop_signal)
    out, _ = proc.communicate(timeout=60)
    if stop_signal == signal.SIGTERM:  # a scheduler's stop: the run unwinds, says so in one line, ends as killed by it
        assert proc.returncode == 128 + signal.SIGTERM and out.splitlines()[-1] == TERMINATED, out[-3000:]
        # the engine's record of the stop says it too, and no traceback is printed
        assert "Traceback" not in out and sum(TERMINATED in line for line in out.splitlines()) == 2, out[-3000:]
    resumed_at = _check_interrupted(run, stop, before)

    out = _finish(_start(bundle, run, samples, tmp_path))
    assert f"resumed from {_paths(run)['output_dir'] / 'checkpoints' / 'checkpoint.pt'}" in out
    _check_resumed(run, reference, before, resumed_at)


@pytest.mark.parametrize("bundle", sorted(INTERRUPTED))
def test_interrupted_run_resumes_in_process(bundle, sample_set, tmp_path, monkeypatch, capsys):
    data, stop = INTERRUPTED[bundle]
    samples = sample_set(data)
    monkeypatch.syspath_prepend(str(tmp_path))

    def train(root: Path, **overrides) -> None:
        run_workflow(bundle, ["train.json", "smoke.yaml"], "train", check=False, bundle_root=str(root),
                     dataset_dir=str(samples), max_epochs=EPOCHS, **{k: str(v) for k, v in _paths(root).items()}, **overrides)

    train(tmp_path / "reference")
    run = tmp_path / "run"
    before = _previous_model(run)
    with pytest.raises(RuntimeError) as err:
        train(run, **_stop_override(tmp_path, stop, tmp_path / "stopped", "raise"))
    assert str(root_cause(err.value)) == "simulated kill"
    resumed_at = _check_interrupted(run, stop, before)
    first, checkpoint = tmp_path / "first_iteration", _paths(run)["output_dir"] / "checkpoints" / "checkpoint.pt"
    # the stopped run's files are no finished model: inference refuses its resume checkpoint in one line, before any
    # case, and runs its best model so far with a warning
    def infer(ckpt: Path) -> None:
        run_workflow(bundle, ["inference.json", "smoke.yaml"], "infer", check=False, bundle_root=str(run),
                     dataset_dir=str(samples), output_dir=str(tmp_path / "inferred"), ckpt_path=str(ckpt))

    with pytest.raises(Exception) as err:
        infer(checkpoint)
    message = str(root_cause(err.value))
    assert message.startswith(f"{checkpoint} is a fine-tuning run's resume checkpoint") and "\n" not in message
    assert not (tmp_path / "inferred").exists()
    capsys.readouterr()
    infer(checkpoint.with_name("best_model.pt"))
    held = resumed_at // torch.load(checkpoint, weights_only=True)["trainer"]["epoch_length"]
    assert (f"best_model.pt is the best model so far of a training run that has not finished ({held} of {EPOCHS} "
            "epochs in the checkpoint.pt beside it)") in capsys.readouterr().out
    train(run, **_first_iteration_override(tmp_path, first))
    # it went on from the checkpoint (training over from the start, seeded alike, would end with the same weights)
    assert int(first.read_text()) == resumed_at + 1
    log = capsys.readouterr().out
    assert f"resumed from {checkpoint} at iteration {resumed_at}" in log, log[-2000:]
    _check_resumed(run, tmp_path / "reference", before, resumed_at)
    # a finished run is not resumed: running it again trains anew, and keeps the model it replaces beside the
    # earlier copy (model.pt.prev is taken: no copy is overwritten)
    published = (_paths(run)["ckpt_dir"] / "model.pt").read_bytes()
    earlier = (_paths(run)["ckpt_dir"] / "model.pt.prev").read_bytes()
    train(run, **_first_iteration_override(tmp_path, first))
    assert int(first.read_text()) == 1 and "resumed from" not in capsys.readouterr().out
    _assert_same(_state(run)[0]["network"], _state(tmp_path / "reference")[0]["network"])
    assert (_paths(run)["ckpt_dir"] / "model.pt.prev.2").read_bytes() == published
    assert (_paths(run)["ckpt_dir"] / "model.pt.prev").read_bytes() == earlier


def test_a_finished_run_whose_publish_failed_publishes_when_run_again_without_training(sample_set, tmp_path,
                                                                                        monkeypatch, capsys):
    # the publish at the end fails once (a full disk; a kill there leaves the same files), after the last checkpoint
    from unimiss_monai.handlers import publish_best_model

    monkeypatch.syspath_prepend(str(tmp_path))
    run, first = tmp_path / "run", tmp_path / "first_iteration"
    before = _previous_model(run)

    def train(**overrides) -> None:
        run_workflow("unimiss_cxr_classification", ["train.json", "smoke.yaml"], "train", check=False,
                     bundle_root=str(run), dataset_dir=str(sample_set("cxr_classification")), max_epochs=2,
                     **{k: str(v) for k, v in _paths(run).items()}, **overrides)

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(publish_best_model.shutil, "copyfile", full_disk)
        with pytest.raises(Exception) as err:
            train()
    assert isinstance(root_cause(err.value), OSError)
    model, best = _paths(run)["ckpt_dir"] / "model.pt", _paths(run)["output_dir"] / "checkpoints" / "best_model.pt"
    assert model.read_bytes() == before
    capsys.readouterr()
    train(**_first_iteration_override(tmp_path, first))
    log = capsys.readouterr().out
    assert not first.exists(), "the rerun trained"
    assert "publishing it instead of training anew" in log and "finished run: training anew" not in log, log[-2000:]
    assert "resumed from" not in log  # the one line says what happened
    assert model.read_bytes() == best.read_bytes() and model.with_name("model.pt.prev").read_bytes() == before


NAN_MODULE = '''
import json
from pathlib import Path
from ignite.engine import Events


class NaNAt:
    """The bundle's loss, NaN on its ``call``-th call (the training iteration of that number)."""

    def __init__(self, loss, call):
        self.loss, self.call, self.calls = loss, call, 0

    def __call__(self, pred, label):
        self.calls += 1
        value = self.loss(pred, label)
        return value * float("nan") if self.calls == self.call else value


class RecordFiles:
    """Writes the source files of the batch of ``iteration`` to ``path``, as the data loader delivered them."""

    def __init__(self, iteration, path):
        self.iteration, self.path = iteration, Path(path)

    def attach(self, engine):
        engine.add_event_handler(Events.ITERATION_STARTED(once=self.iteration), self)

    def __call__(self, engine):
        self.path.write_text(json.dumps(list(engine.state.batch["image"].meta["filename_or_obj"])))
'''


def test_nan_loss_stops_naming_the_batch_files_and_saves_nothing(sample_set, tmp_path, monkeypatch):
    # the bundles refuse NaN/Inf voxels before training, so the NaN comes from a loss stub, on the last iteration of
    # epoch 1 (2 per epoch), just before the end-of-epoch validation and checkpoint would save
    (tmp_path / "nan_at.py").write_text(NAN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    root, record = tmp_path / "run", tmp_path / "batch.json"
    before = _previous_model(root)
    overrides = {
        "nan_loss": {"_target_": "nan_at.NaNAt", "loss": "@loss", "call": 2}, "train#trainer#loss_function": "@nan_loss",
        "record": {"_target_": "nan_at.RecordFiles", "iteration": 2, "path": str(record)},
        "train#trainer#train_handlers": "$@train#handlers + [@record]",
    }
    with pytest.raises(RuntimeError) as err:
        run_workflow("unimiss_cxr_classification", ["train.json", "smoke.yaml"], "train", check=False,
                     bundle_root=str(root), dataset_dir=str(sample_set("cxr_classification")), max_epochs=2,
                     **{k: str(v) for k, v in _paths(root).items()}, **overrides)
    cause = root_cause(err.value)
    message = str(cause)
    assert isinstance(cause, FloatingPointError), message
    files = json.loads(record.read_text())
    assert len(set(files)) == 8  # the smoke batch size
    assert "\n" not in message and "training loss is nan at epoch 1, iteration 2 (batch files: " in message
    assert f"(batch files: {', '.join(dict.fromkeys(files))})" in message and "nothing was trained on it" in message
    model = _paths(root)["ckpt_dir"] / "model.pt"
    assert model.read_bytes() == before and not model.with_name("model.pt.prev").exists()
    checkpoints = _paths(root)["output_dir"] / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
