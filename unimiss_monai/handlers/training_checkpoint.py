"""Full training checkpoints for exact resume, and the exported teacher backbone."""

from __future__ import annotations

import logging
import os
import random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["TrainingCheckpoint", "atomic_torch_save", "capture_rng_state", "restore_rng_state"]

logger = logging.getLogger(__name__)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a kill never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA generator states (dropout, drop-path and any global-RNG augmentation)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingCheckpoint:
    """Saves ``checkpoint.pt`` every ``save_every`` iterations and at the end; resumes from it at start.

    The checkpoint holds each object's ``state_dict()`` (model with teacher, optimiser, trainer position, loss centre,
    ...), the AMP scaler and the RNG states, so a run killed after a save and restarted produces the same weights as an
    uninterrupted run with the same seed (the data order and augmentations are functions of seed and position, see
    :mod:`unimiss_monai.engines.pretraining_data`). Only rank 0 writes; every rank resumes.

    Args:
        ckpt_dir: folder of ``checkpoint.pt``.
        save_objects: name -> object with ``state_dict``/``load_state_dict`` (network, optimizer, loss with its
            centre, ...); the engine it is attached to is added as ``"trainer"`` (its position).
        save_every: iterations between saves (0: only at the end).
        resume: load ``ckpt_dir/checkpoint.pt`` when it exists.
        export_path: where to write the exported weights (e.g. ``models/model.pt``) at each save; needs ``export_fn``.
        export_fn: returns the state dict to export, saved as ``{"model": export_fn()}``.
    """

    FILENAME = "checkpoint.pt"

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        save_objects: Mapping[str, object],
        save_every: int = 100,
        resume: bool = True,
        export_path: str | os.PathLike | None = None,
        export_fn: Callable[[], Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        if export_path is not None and export_fn is None:
            raise ValueError("TrainingCheckpoint: export_path needs an export_fn returning the state dict to export")
        self.path = Path(ckpt_dir) / self.FILENAME
        self.objects, self.save_every, self.resume = dict(save_objects), int(save_every), resume
        self.export_path, self.export_fn = (Path(export_path) if export_path else None), export_fn

    def attach(self, engine: Engine) -> None:
        self.objects["trainer"] = engine
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        if self.save_every > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_every), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def save(self, engine: Engine) -> None:
        if engine.state.rank != 0:
            return
        ckpt = {name: obj.state_dict() for name, obj in self.objects.items()}
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            ckpt["scaler"] = scaler.state_dict()
        ckpt["rng"] = capture_rng_state()
        atomic_torch_save(ckpt, self.path)
        if self.export_path is not None:
            atomic_torch_save({"model": dict(self.export_fn())}, self.export_path)
        logger.info("iteration %d: saved %s", engine.state.iteration, self.path)

    def load(self, engine: Engine) -> None:
        if not self.path.exists():
            return
        try:
            ckpt = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"cannot read checkpoint {self.path} ({e}); delete it to start over") from e
        for name, obj in self.objects.items():
            if name not in ckpt:
                raise KeyError(f"checkpoint {self.path} has no {name!r} (it has {sorted(ckpt)}); delete it to start over")
            state = ckpt[name]
            if obj is engine:
                # the current run's epoch budget wins, so a finished run can be extended by raising max_epochs
                state = {**state, "max_epochs": engine.state.max_epochs}
            obj.load_state_dict(state)
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        restore_rng_state(ckpt["rng"])
        logger.info("resumed from %s at iteration %d (epoch %d)", self.path, engine.state.iteration, engine.state.epoch)
