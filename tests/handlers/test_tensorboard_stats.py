"""The TensorBoard handler opens its event file when attached: a rank on which it is built but not attached leaves
no empty event file, and an attached one records what MONAI's records."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from unimiss_monai.handlers import TensorBoardStatsHandler
from unimiss_monai.utils.dist import rank_zero_handlers


def _engine() -> Engine:
    return Engine(lambda engine, batch: {"loss": torch.tensor(float(batch))})


def test_built_and_not_attached_it_writes_nothing(tmp_path):
    handler = TensorBoardStatsHandler(log_dir=str(tmp_path / "tb"), output_transform=lambda out: out["loss"])
    handler.close()  # as a finalize step would, on a rank that never attached it
    assert not (tmp_path / "tb").exists()


def test_attached_it_writes_the_iteration_losses(tmp_path):
    handler = TensorBoardStatsHandler(log_dir=str(tmp_path / "tb"), tag_name="train_loss",
                                      output_transform=lambda out: out["loss"])
    engine = _engine()
    handler.attach(engine)
    engine.run([3, 1, 2], max_epochs=1)
    handler.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train_loss")] == [(1, 3.0), (2, 1.0), (3, 2.0)]


def test_a_given_writer_is_used_and_left_open(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "own"))
    handler = TensorBoardStatsHandler(summary_writer=writer, output_transform=lambda out: out["loss"])
    handler.attach(_engine())
    handler.close()
    assert handler._writer is writer and not handler.internal_writer
    writer.add_scalar("still", 1.0)  # not closed by the handler
    writer.close()


def test_other_ranks_drop_it_without_an_event_file(tmp_path, monkeypatch):
    import unimiss_monai.utils.dist as dist

    monkeypatch.setattr(dist, "is_rank_zero", lambda: False)
    handler = TensorBoardStatsHandler(log_dir=str(tmp_path / "tb"))
    assert rank_zero_handlers([handler]) == [] and not (tmp_path / "tb").exists()
