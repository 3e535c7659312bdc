"""An epoch's running counts on one process, checkpointed with the trainer's position so that an epoch resumed mid-way
reports and checks the whole epoch: the samples each phase trained on, its iterations, its first failure, and the sums
train handlers keep for the epoch (:class:`~unimiss_monai.handlers.CollapseMonitor`). Under ``torchrun`` each process
counts its own share, so the checkpoint holds every process's and each resumes its own."""

from __future__ import annotations

import copy
from collections.abc import Mapping

__all__ = ["BY_RANK", "EPOCH_KEYS", "epoch_counts", "saved_epoch_counts", "start_epoch_counts"]

#: an epoch's counts at its start
_FRESH = {"samples_trained": {"ct": 0, "xray": 0}, "phase_iterations": {"ct": 0, "xray": 0}, "first_failure": {},
          "epoch_accumulators": {}}
EPOCH_KEYS = tuple(_FRESH)
#: the trainer state's entry holding every process's counts, in rank order (only under torchrun)
BY_RANK = "epoch_counts_by_rank"


def start_epoch_counts(state) -> None:
    """Set an engine ``state``'s counts to those of an epoch's start."""
    for key, value in copy.deepcopy(_FRESH).items():
        setattr(state, key, value)


def epoch_counts(state) -> dict:
    """A copy of an engine ``state``'s counts, as a checkpoint keeps them."""
    return {key: copy.deepcopy(getattr(state, key)) for key in EPOCH_KEYS}


def saved_epoch_counts(saved: Mapping, rank: int) -> dict:
    """Process ``rank``'s counts in a saved trainer state: its own where the checkpoint holds every process's; else
    those at the state's top level (rank 0's, or a single process's); a checkpoint written before counts were saved
    starts them afresh at the resume point."""
    by_rank = saved.get(BY_RANK)
    own = by_rank[rank] if isinstance(by_rank, (list, tuple)) and rank < len(by_rank) else saved
    return {key: copy.deepcopy(own.get(key, fresh)) for key, fresh in _FRESH.items()}
