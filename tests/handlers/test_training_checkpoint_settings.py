"""A resumed run trains on with the optimiser its checkpoint holds: a learning rate (or weight decay) asked for anew is
not used, and a warning names it with the fix, where the run went on with the old one unsaid. A resume with another
seed is said too: the rest of the run draws from it."""

from __future__ import annotations

import torch
from ignite.engine import Engine

from unimiss_monai.handlers import TrainingCheckpoint


def _run(ckpt_dir, settings, max_epochs: int, seed=None) -> None:
    engine = Engine(lambda e, b: None)
    engine.state.rank = 0
    TrainingCheckpoint(ckpt_dir, {"network": torch.nn.Linear(2, 1)}, save_every=1, epoch_level=True,
                       optimiser_settings=settings, seed=seed).attach(engine)
    engine.run(range(2), max_epochs=max_epochs)


def test_a_resume_asking_for_another_learning_rate_says_it_keeps_the_checkpoints(tmp_path, caplog):
    def warnings() -> list[str]:  # another test may have left a logger at INFO: only the warnings count here
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    _run(tmp_path, {"learning_rate": 0.0003, "weight_decay": 0.01}, max_epochs=1)
    with caplog.at_level("WARNING"):
        _run(tmp_path, {"learning_rate": "0.0003", "weight_decay": 0.01}, max_epochs=2)  # as the command line gives it
        assert not warnings()
        _run(tmp_path, {"learning_rate": "0.01", "weight_decay": 0.01}, max_epochs=3)
    assert warnings() == [
        f"{tmp_path / 'checkpoint.pt'}: resumed with the optimiser it holds, so it trains on with learning_rate 0.0003 "
        "(not this run's 0.01); delete the checkpoint, or choose another output_dir, to train anew with this run's"]


def test_a_resume_with_another_seed_is_said_and_one_with_the_same_is_not(tmp_path, caplog):
    settings = {"learning_rate": 0.0003}
    _run(tmp_path, settings, max_epochs=1, seed=0)
    with caplog.at_level("WARNING"):
        _run(tmp_path, settings, max_epochs=2, seed="0")  # as the command line may give it
        _run(tmp_path / "unrecorded", settings, max_epochs=1)  # a checkpoint without a seed: nothing to compare
        _run(tmp_path / "unrecorded", settings, max_epochs=2, seed=3)
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
        _run(tmp_path, settings, max_epochs=3, seed=5)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"{tmp_path / 'checkpoint.pt'} was written by a run with seed 0: resumed with seed 5")
    assert warning.endswith("run with --seed 0 to continue it as it was")
