"""TrainingCheckpoint at epoch level (fine-tuning): saved after every other end-of-epoch handler, a finished run is
started anew when asked, and a state holding NaN/Inf is never written."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from unimiss_monai.handlers import TrainingCheckpoint


class Counter:
    """Counts epoch ends; attached after the checkpoint, like a validation handler listed after it."""

    def __init__(self) -> None:
        self.count = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: setattr(self, "count", self.count + 1))

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]


def _run(ckpt_dir, max_epochs: int, resume_finished: bool = True, net: torch.nn.Module | None = None,
         diverge_at: int = 0, data_len: int = 3, epoch_level: bool = True) -> tuple[Engine, Counter]:
    def step(engine: Engine, batch) -> None:
        if engine.state.iteration == diverge_at:
            torch.nn.init.constant_(net.weight, float("inf"))

    engine = Engine(step)
    engine.state.rank = 0
    counter = Counter()
    objects = {"counter": counter, **({"network": net} if net is not None else {})}
    TrainingCheckpoint(ckpt_dir, objects, save_every=1, epoch_level=epoch_level, resume_finished=resume_finished).attach(engine)
    counter.attach(engine)
    engine.run(range(data_len), max_epochs=max_epochs)
    return engine, counter


def test_the_epoch_save_holds_the_epochs_later_handlers(tmp_path, caplog):
    _run(tmp_path, max_epochs=1)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["counter"] == {"count": 1}
    with caplog.at_level("INFO", logger="unimiss_monai.handlers.training_checkpoint"):
        engine, counter = _run(tmp_path, max_epochs=3)  # resumes after epoch 1
    assert counter.count == 3 and engine.state.iteration == 9
    # a finished run taken further: its step schedules stretch to the new length, which is said
    assert [r.getMessage() for r in caplog.records if "goes on" in r.getMessage()] == [
        f"{tmp_path / 'checkpoint.pt'}: the finished run of 1 epoch(s) goes on to 3; schedules computed from the run's "
        "length (pretraining's learning rate and momentum) now span 3, so the rate may rise again"]


def test_a_finished_run_is_resumed_or_started_anew(tmp_path):
    _run(tmp_path, max_epochs=2)
    engine, counter = _run(tmp_path, max_epochs=2)  # resumed: nothing left to train
    assert counter.count == 2
    engine, counter = _run(tmp_path, max_epochs=2, resume_finished=False)
    assert counter.count == 2 and engine.state.iteration == 6  # trained from the start
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 6


def test_a_non_finite_state_is_not_saved(tmp_path):
    net = torch.nn.Linear(2, 1)
    _run(tmp_path, max_epochs=1, net=net)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(FloatingPointError, match=r"not saving .*checkpoint.pt at iteration 6: network.weight holds NaN or Inf"):
        _run(tmp_path, max_epochs=2, net=net, diverge_at=5)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("epoch_level", [True, False])
def test_a_checkpoint_of_other_epochs_is_refused(tmp_path, epoch_level):
    # saved by iteration (pretraining) as well as by epoch: the saved iteration marks another place in other data
    _run(tmp_path, max_epochs=1, epoch_level=epoch_level)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(RuntimeError, match=r"written with 3 iterations per epoch, this run has 5 .* delete it to start over"):
        _run(tmp_path, max_epochs=2, data_len=5, epoch_level=epoch_level)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_boolean_options_given_as_strings_are_read_as_booleans(tmp_path):
    # the command line hands "false" over as a string, which Python counts as true
    _run(tmp_path, max_epochs=1)
    engine = Engine(lambda e, b: None)
    engine.state.rank = 0
    counter = Counter()
    ckpt = TrainingCheckpoint(tmp_path, {"counter": counter}, save_every=1, resume="false", epoch_level="false")
    assert ckpt.resume is False and ckpt.epoch_level is False
    ckpt.attach(engine)
    counter.attach(engine)
    engine.run(range(3), max_epochs=1)
    assert counter.count == 1  # not resumed: the earlier run's epoch is not counted again
    with pytest.raises(ValueError, match="'resume' is 'maybe'"):
        TrainingCheckpoint(tmp_path, {}, resume="maybe")
