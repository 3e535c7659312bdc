"""TrainingCheckpoint: a checkpoint further on than this run's epochs (a run of 40 epochs killed after epoch 8, rerun
with the config's 2) is refused in one line naming the file and the fix, never with ignite's advice about
``engine.state.max_epochs``; the file is kept, and raising the epochs resumes it."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from unimiss_monai.handlers import TrainingCheckpoint
from unimiss_monai.utils.errors import user_error_message

DATA_LEN = 3


class Killed(Exception):
    """Stands for the process being killed: the run stops without its end-of-run save."""


def _kill(engine: Engine) -> None:
    raise Killed()


def _run(ckpt_dir, max_epochs: int, kill_after_epoch: int = 0, epoch_level: bool = True,
         resume_finished: bool = True, kill_at_iteration: int = 0) -> Engine:
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda engine, batch: None)
    engine.state.rank = 0
    # epoch level: the fine-tuning bundles; every 2 iterations: pretraining (saves inside an epoch as well)
    TrainingCheckpoint(ckpt_dir, {"network": net}, save_every=1 if epoch_level else 2, epoch_level=epoch_level,
                       resume_finished=resume_finished).attach(engine)

    if kill_after_epoch:
        engine.add_event_handler(Events.EPOCH_STARTED(once=kill_after_epoch + 1), _kill)
    if kill_at_iteration:
        engine.add_event_handler(Events.ITERATION_STARTED(once=kill_at_iteration), _kill)
    engine.run(range(DATA_LEN), max_epochs=max_epochs)
    return engine


def _killed_after_epoch_8_of_40(ckpt_dir, epoch_level: bool = True) -> bytes:
    with pytest.raises(Killed):
        _run(ckpt_dir, max_epochs=40, kill_after_epoch=8, epoch_level=epoch_level)
    saved = torch.load(ckpt_dir / "checkpoint.pt", weights_only=True)["trainer"]
    assert saved["iteration"] == 8 * DATA_LEN and saved["max_epochs"] == 40
    return (ckpt_dir / "checkpoint.pt").read_bytes()


@pytest.mark.parametrize("epoch_level, resume_finished", [(True, False), (False, True)])
def test_a_rerun_with_fewer_epochs_than_the_checkpoint_holds_is_refused_in_one_line(tmp_path, epoch_level,
                                                                                      resume_finished):
    before = _killed_after_epoch_8_of_40(tmp_path, epoch_level)
    with pytest.raises(RuntimeError) as info:
        _run(tmp_path, max_epochs=2, epoch_level=epoch_level, resume_finished=resume_finished)
    message = str(info.value)
    assert message == (
        f"cannot resume from {tmp_path / 'checkpoint.pt'}: it holds 8 finished epoch(s) of 40, more than the 2 this "
        "run is set to; raise the epochs to at least 8 (--train#epochs; --max_epochs in the fine-tuning bundles) to "
        "continue it, or choose another --output_dir to start afresh"
    )
    assert "engine.state.max_epochs" not in message
    assert user_error_message(info.value) == message  # printed as one line, without a traceback
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # the only record of 8 epochs is kept


def test_raising_the_epochs_to_those_done_or_more_resumes(tmp_path):
    _killed_after_epoch_8_of_40(tmp_path)
    engine = _run(tmp_path, max_epochs=8)  # nothing left to train, but no error
    assert engine.state.epoch == 8 and engine.state.iteration == 8 * DATA_LEN
    engine = _run(tmp_path, max_epochs=10)
    assert engine.state.epoch == 10 and engine.state.iteration == 10 * DATA_LEN


def test_a_finished_run_with_more_epochs_is_refused_unless_fine_tuning_trains_it_anew(tmp_path):
    _run(tmp_path, max_epochs=5)
    with pytest.raises(RuntimeError, match=r"holds 5 finished epoch\(s\) of 5, more than the 3 this run is set to"):
        _run(tmp_path, max_epochs=3)  # pretraining resumes finished runs (to extend them)
    engine = _run(tmp_path, max_epochs=3, resume_finished=False)  # fine-tuning trains a finished run anew
    assert engine.state.iteration == 3 * DATA_LEN


def test_a_checkpoint_inside_the_epoch_after_the_last_is_refused_not_exported_at_once(tmp_path):
    # saved every 2 iterations (3 per epoch): killed at iteration 12, the last save (iteration 10) lies inside epoch 4.
    # A run of 3 epochs would end at once on it (3 epochs done) and export weights of neither length
    with pytest.raises(Killed):
        _run(tmp_path, max_epochs=40, kill_at_iteration=12, epoch_level=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 10
    for fewer in (2, 3):
        with pytest.raises(RuntimeError, match=rf"holds 3 finished epoch\(s\) of 40 and 1 iteration\(s\) of epoch 4, "
                                               rf"more than the {fewer} this run .* at least 4 "):
            _run(tmp_path, max_epochs=fewer, epoch_level=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert _run(tmp_path, max_epochs=4, epoch_level=False).state.iteration == 4 * DATA_LEN


def _scheduled_run(ckpt_dir, max_epochs: int, kill_after_epoch: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """A fine-tuning-like run: epoch-level saves, a cosine schedule over the run's epochs restored with the rest."""
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
    engine = Engine(lambda engine, batch: optimizer.step())  # no gradients: a step that changes nothing
    engine.state.rank = 0
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: scheduler.step())
    TrainingCheckpoint(ckpt_dir, {"network": net, "optimizer": optimizer, "lr_scheduler": scheduler}, save_every=1,
                       epoch_level=True, resume_finished=False).attach(engine)
    if kill_after_epoch:
        engine.add_event_handler(Events.EPOCH_STARTED(once=kill_after_epoch + 1), _kill)
    engine.run(range(DATA_LEN), max_epochs=max_epochs)
    return scheduler


def test_a_stopped_run_with_a_restored_schedule_is_not_resumed_as_a_run_of_another_length(tmp_path):
    # a fine-tune of 5 epochs killed after 2, rerun with 3: resumed, its cosine schedule still spanned 5 epochs, and
    # the model published as a 3-epoch run ended at a learning rate an uninterrupted 3-epoch run never has
    with pytest.raises(Killed):
        _scheduled_run(tmp_path, max_epochs=5, kill_after_epoch=2)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(RuntimeError) as info:
        _scheduled_run(tmp_path, max_epochs=3)
    assert str(info.value) == (
        f"cannot resume from {tmp_path / 'checkpoint.pt'}: it is the checkpoint of a stopped run of 5 epoch(s) and "
        "this run is set to 3; resumed, it would train on with that run's learning-rate schedule; run with "
        "--max_epochs 5 to continue it, or choose another --output_dir to train 3 anew")
    assert user_error_message(info.value) == str(info.value) and (tmp_path / "checkpoint.pt").read_bytes() == before
    with pytest.raises(RuntimeError, match=r"run with --max_epochs 5 to continue it"):
        _scheduled_run(tmp_path, max_epochs=1)  # fewer epochs than it holds: its own length is still the way on
    resumed = _scheduled_run(tmp_path, max_epochs=5)  # its own length continues it, to the schedule's end
    assert resumed.last_epoch == 5 and resumed.get_last_lr() == pytest.approx([0.0], abs=1e-12)


def test_a_stopped_run_without_a_schedule_object_resumes_at_another_length_with_a_warning(tmp_path, caplog):
    with pytest.raises(Killed):
        _run(tmp_path, max_epochs=5, kill_after_epoch=2)
    with caplog.at_level("WARNING"):
        assert _run(tmp_path, max_epochs=3).state.iteration == 3 * DATA_LEN
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == [f"{tmp_path / 'checkpoint.pt'}: the stopped run of 5 epoch(s) resumes as one of 3; any "
                    "schedules computed from the run's length (pretraining's learning rate and momentum) now span 3, so they "
                    "change from here on; run with 5 epochs to continue it as it was"]
