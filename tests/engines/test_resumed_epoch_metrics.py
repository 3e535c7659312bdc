"""An epoch killed mid-way and resumed reports the same summaries as an uninterrupted one: the trainer checkpoints the
epoch's sample counts and the per-epoch sums of CollapseMonitor with its position."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Events

sys.path.insert(0, str(Path(__file__).parent))
from test_pretraining_toys import OUT_DIM, build_trainer  # noqa: E402

from unimiss_monai.handlers import CollapseMonitor  # noqa: E402
from unimiss_monai.handlers.training_checkpoint import TrainingCheckpoint  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SUMMARIES = ("ct_samples", "xray_samples", "epoch/teacher_entropy", "epoch/teacher_batch_entropy", "epoch/center_norm")
# the keys the trainer's state_dict holds for the current epoch (a checkpoint written before them lacks them)
EPOCH_KEYS = ("samples_trained", "phase_iterations", "first_failure", "epoch_accumulators")


def _train(ckpt_dir, crash_at=None):
    """3 epochs of 4 iterations (CT, X-ray, CT), a checkpoint every 2; returns {epoch: summaries} of the epochs it
    completed and the monitor."""
    monitor = CollapseMonitor(out_dim=OUT_DIM)
    trainer, net, opt, loss = build_trainer(max_epochs=3, n_ct=8, n_xray=8, batch_size=2, handlers=[monitor])
    TrainingCheckpoint(ckpt_dir, {"network": net, "optimizer": opt, "loss": loss}, save_every=2).attach(trainer)
    summaries = {}
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        lambda e: summaries.update({e.state.epoch: {k: e.state.metrics.get(k) for k in SUMMARIES}}),
    )
    if crash_at is not None:

        @trainer.on(Events.ITERATION_COMPLETED(once=crash_at))
        def _crash(engine):
            raise KeyboardInterrupt("simulated kill")

    trainer.run()
    return summaries, monitor


def _kill(ckpt_dir, crash_at, saved_at):
    with pytest.raises(KeyboardInterrupt):
        _train(ckpt_dir, crash_at=crash_at)
    assert torch.load(ckpt_dir / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == saved_at


def test_an_epoch_resumed_mid_way_reports_the_summaries_of_an_uninterrupted_one(tmp_path):
    reference, ref_monitor = _train(tmp_path / "ref")
    assert reference[1]["ct_samples"] == 8.0 and reference[2]["xray_samples"] == 8.0
    assert all(reference[e]["epoch/teacher_entropy"] is not None for e in reference)
    # killed in the CT epoch 1 (saved at iteration 2) and in the X-ray epoch 2 (saved at iteration 6)
    for crash_at, saved_at in ((3, 2), (7, 6)):
        run = tmp_path / f"run{crash_at}"
        _kill(run, crash_at, saved_at)
        resumed, monitor = _train(run)
        first = (saved_at // 4) + 1  # the epoch the resume continues
        assert sorted(resumed) == list(range(first, 4))
        for epoch in resumed:
            assert resumed[epoch] == reference[epoch], (crash_at, epoch)
        assert monitor.collapsed_epochs == [e for e in ref_monitor.collapsed_epochs if e >= first]


def test_a_checkpoint_without_the_epoch_counts_still_resumes(tmp_path):
    reference, _ = _train(tmp_path / "ref")
    run = tmp_path / "run"
    _kill(run, crash_at=3, saved_at=2)
    path = run / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    assert set(EPOCH_KEYS) <= set(ckpt["trainer"])
    ckpt["trainer"] = {k: v for k, v in ckpt["trainer"].items() if k not in EPOCH_KEYS}  # as an older version wrote
    torch.save(ckpt, path)
    resumed, _ = _train(run)
    # the resumed epoch counts from the resume point on, as before; the epochs after it are whole again
    assert resumed[1]["ct_samples"] == 4.0
    assert resumed[2] == reference[2] and resumed[3] == reference[3]
