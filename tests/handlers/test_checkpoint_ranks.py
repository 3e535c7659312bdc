"""TrainingCheckpoint under torch.distributed: two gloo ranks on 127.0.0.1 with different random streams; after a
resume each rank draws what it would have drawn in the uninterrupted run (the checkpoint keeps every rank's
generators, not rank 0's alone)."""

from __future__ import annotations

import torch
from gloo_ranks import run_on_two_ranks
from ignite.engine import Engine

from unimiss_monai.handlers import TrainingCheckpoint


def _run(ckpt_dir, rank: int, max_epochs: int) -> list[float]:
    """One draw per iteration from the global generator (as dropout draws); returns this run's draws."""
    draws: list[float] = []
    engine = Engine(lambda e, b: draws.append(float(torch.rand(()))))
    engine.state.rank = rank
    TrainingCheckpoint(ckpt_dir, {}, save_every=2).attach(engine)
    engine.run(range(4), max_epochs=max_epochs)
    return draws


def _rank(rank, tmp):
    torch.manual_seed(100 + rank)  # each rank its own stream, as with per-rank seeds
    whole = _run(tmp / "whole", rank, 2)
    torch.manual_seed(100 + rank)
    first = _run(tmp / "resumed", rank, 1)
    torch.manual_seed(999)  # the restarted process starts from another state; the checkpoint must restore it
    rest = _run(tmp / "resumed", rank, 2)
    torch.save({"whole": whole, "resumed": first + rest}, tmp / f"rank{rank}.pt")


def test_each_rank_resumes_its_own_random_stream(tmp_path):
    run_on_two_ranks(_rank, tmp_path)
    runs = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for run in runs:
        assert len(run["whole"]) == 8 and run["resumed"] == run["whole"]
    assert runs[0]["whole"] != runs[1]["whole"]  # the ranks' streams differ, so rank 0's state would not do for rank 1
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["rng"]
    assert isinstance(saved, list) and len(saved) == 2
