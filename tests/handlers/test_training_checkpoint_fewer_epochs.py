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


def _run(ckpt_dir, max_epochs: int, kill_after_epoch: int = 0, epoch_level: bool = True,
         resume_finished: bool = True, kill_at_iteration: int = 0) -> Engine:
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda engine, batch: None)
    engine.state.rank = 0
    # epoch level: the fine-tuning bundles; every 2 iterations: pretraining (saves inside an epoch as well)
    TrainingCheckpoint(ckpt_dir, {"network": net}, save_every=1 if epoch_level else 2, epoch_level=epoch_level,
                       resume_finished=resume_finished).attach(engine)

    def kill(engine: Engine) -> None:
        raise Killed()

    if kill_after_epoch:
        engine.add_event_handler(Events.EPOCH_STARTED(once=kill_after_epoch + 1), kill)
    if kill_at_iteration:
        engine.add_event_handler(Events.ITERATION_STARTED(once=kill_at_iteration), kill)
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


def test_a_checkpoint_inside_an_epoch_counts_its_finished_epochs(tmp_path):
    # saved every 2 iterations (3 per epoch): killed at iteration 12, the last save (iteration 10) lies inside epoch 4
    with pytest.raises(Killed):
        _run(tmp_path, max_epochs=40, kill_at_iteration=12, epoch_level=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 10
    with pytest.raises(RuntimeError, match=r"holds 3 finished epoch\(s\) of 40, more than the 2 .* at least 3 "):
        _run(tmp_path, max_epochs=2, epoch_level=False)
    assert _run(tmp_path, max_epochs=5, epoch_level=False).state.iteration == 5 * DATA_LEN
