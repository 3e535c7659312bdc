"""The one seed derivation of the package: every per-epoch random choice (a sampler's order, a loader's generator,
the augmentations of a resumed run) is seeded from ``(seed, epoch, rank)`` through :func:`epoch_seed`."""

from __future__ import annotations

__all__ = ["SEED_MOD", "epoch_seed"]

#: seeds are kept below 2**31 - 1 (a Mersenne prime): valid for torch, numpy and MONAI's ``set_random_state``
SEED_MOD = 2**31 - 1


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of ``epoch`` on ``rank``: distinct per epoch and rank, the same in every run with the same ``seed``.

    Args:
        seed: the run's base seed.
        epoch: epoch number (any fixed convention, 0- or 1-based, as long as the caller keeps it).
        rank: process rank; pass 0 for a choice every rank must share (e.g. a global sample order).
    """
    return ((int(seed) * 1_000_003 + int(epoch)) * 1_000_033 + int(rank)) % SEED_MOD
