"""An epoch's running counts on one process, checkpointed with the trainer's position so that an epoch resumed mid-way
reports and checks the whole epoch: the samples each phase trained on, its iterations, its first failure, and the sums
train handlers keep for the epoch (:class:`~unimiss_monai.handlers.CollapseMonitor`). Under ``torchrun`` each process
counts its own share, so the checkpoint holds every process's and each resumes its own."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping

__all__ = ["BY_RANK", "EPOCH_KEYS", "epoch_counts", "saved_epoch_counts", "start_epoch_counts"]

logger = logging.getLogger(__name__)

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
    """Process ``rank``'s counts in a saved trainer state: its own where the checkpoint holds every process's, those
    at the state's top level for rank 0 (a single process's, or rank 0's in a checkpoint written before every
    process's were kept). A process the checkpoint holds none of (it was written by fewer processes) counts afresh
    from the resume point, said in a warning: another process's counts would make its own checks of the epoch
    pass or fail on that process's samples. A checkpoint written before counts were saved starts them afresh too."""
    by_rank = saved.get(BY_RANK)
    by_rank = list(by_rank) if isinstance(by_rank, (list, tuple)) else [saved]
    if rank < len(by_rank):
        own = by_rank[rank]
    else:
        own = {}
        iteration, length = saved.get("iteration") or 0, saved.get("epoch_length")
        if any(key in saved for key in EPOCH_KEYS) and length and iteration % length:  # mid-epoch: counts lost
            logger.warning("the checkpoint holds the epoch counts of %d process(es); process %d counts the samples of "
                           "the epoch it resumes from the resume point on", len(by_rank), rank)
    return {key: copy.deepcopy(own.get(key, fresh)) for key, fresh in _FRESH.items()}
