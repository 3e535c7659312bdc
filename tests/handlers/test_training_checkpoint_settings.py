"""A resumed run trains on with the optimiser its checkpoint holds: a learning rate (or weight decay) asked for anew is
not used, and a warning names it with the fix, where the run went on with the old one unsaid."""

from __future__ import annotations

import torch
from ignite.engine import Engine

from unimiss_monai.handlers import TrainingCheckpoint


def _run(ckpt_dir, settings, max_epochs: int) -> None:
    engine = Engine(lambda e, b: None)
    engine.state.rank = 0
    TrainingCheckpoint(ckpt_dir, {"network": torch.nn.Linear(2, 1)}, save_every=1, epoch_level=True,
                       optimiser_settings=settings).attach(engine)
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
