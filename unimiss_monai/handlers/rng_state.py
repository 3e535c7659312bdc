"""The random generators' states a resume checkpoint holds (Python, NumPy, torch CPU and CUDA), one per rank, as
plain tensors and numbers that load weights-only."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["capture_rng_state", "rank_state", "restore_rng_state"]

logger = logging.getLogger(__name__)


def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA generator states (dropout, drop-path and any global-RNG augmentation).

    Every entry is a tensor, number, string or container of them, so the checkpoint loads with ``weights_only=True``:
    NumPy's key array is stored as an int64 tensor, not as an ``ndarray``.
    """
    name, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {
        "bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
        "has_gauss": int(has_gauss), "gauss": float(gauss),
    }
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        # this process's own device only: one process drives one GPU, and a run may resume on fewer visible GPUs
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Mapping) -> None:
    """Set the generators to ``state`` from :func:`capture_rng_state` (also the older form with NumPy's raw tuple)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, Mapping):
        numpy_state = (
            numpy_state["bit_generator"], numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
            numpy_state["has_gauss"], numpy_state["gauss"],
        )
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):  # the older form: one state per visible device
            cuda = cuda[torch.cuda.current_device()] if torch.cuda.current_device() < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def rank_state(saved, rank: int) -> Mapping:
    """This rank's generator states from a checkpoint's ``rng``: one per rank, or (older files) rank 0's alone."""
    if isinstance(saved, Mapping):
        return saved
    if rank >= len(saved):
        logger.warning("the checkpoint holds the generators of %d rank(s); rank %d resumes with rank 0's, so its "
                       "random draws differ from an uninterrupted run with as many ranks as now", len(saved), rank)
        return saved[0]
    return saved[rank]
