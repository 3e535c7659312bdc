"""Stop training at the first non-finite loss or weight, before it is trained on or saved, naming the batch's files."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from unimiss_monai.utils.finite import first_non_finite

__all__ = ["NonFiniteGuard", "batch_files"]

# a resumed run restores the optimiser, learning rate included, so a changed rate needs a fresh start
RESTART_HINT = "delete the run's checkpoints/checkpoint.pt first: resuming keeps the old rate"


def batch_files(batch: Any, key: str = "image") -> list[str]:
    """The distinct source files of a batch: ``filename_or_obj`` of ``batch[key]``'s meta data (a collated dict, or the
    list of dicts MONAI decollates it into), in batch order; empty when the batch carries no file names."""
    items = batch if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)) else [batch]
    names: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        meta = getattr(item.get(key), "meta", None) or item.get(f"{key}_meta_dict") or {}
        found = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
        for name in found if isinstance(found, (list, tuple)) else [found]:
            if isinstance(name, (str, os.PathLike)) and str(name) and str(name) not in names:
                names.append(str(name))
    return names


class NonFiniteGuard:
    """Ignite handler: raise ``FloatingPointError`` with one line naming the batch's files when the loss is NaN or Inf,
    and (with ``network``) when an optimiser step has left a weight NaN or Inf.

    On MONAI's ``SupervisedTrainer`` the loss is checked at ``IterationEvents.LOSS_COMPLETED``, before the backward
    pass, so the optimiser never steps on it; on other engines at ``ITERATION_COMPLETED`` (``engine.state.output`` then
    holds the loss). The weights are checked after every iteration, before end-of-epoch validation or checkpointing
    can save them. The error ends the run, so nothing non-finite is written afterwards.

    Args:
        network: the trained network; ``None`` checks only the loss.
        loss_key: key of the loss in ``engine.state.output``.
        image_key: key of the images in ``engine.state.batch``, whose ``filename_or_obj`` meta data names the files.

    Examples::

        {"_target_": "unimiss_monai.handlers.NonFiniteGuard", "network": "@network"}
    """

    def __init__(self, network: torch.nn.Module | None = None, loss_key: str = "loss", image_key: str = "image") -> None:
        self.network, self.loss_key, self.image_key = network, loss_key, image_key

    def attach(self, engine: Engine) -> None:
        from monai.engines.utils import IterationEvents

        before_backward = engine.has_registered_events(IterationEvents.LOSS_COMPLETED)
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED if before_backward else Events.ITERATION_COMPLETED, self.check_loss)
        if self.network is not None:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.check_weights)

    def _where(self, engine: Engine) -> str:
        files = batch_files(engine.state.batch, self.image_key)
        batch = f" (batch files: {', '.join(files)})" if files else ""
        return f"epoch {engine.state.epoch}, iteration {engine.state.iteration}{batch}"

    def _loss_fix(self, engine: Engine) -> str:
        """What to do about a non-finite loss: check the batch's files when it names them; else (a pipeline that drops
        the meta data, ``EnsureTyped(track_meta=False)``) say that there are none to check, and that a rate too high
        is the likelier cause: a loss that was finite for earlier batches rarely turns NaN from the data alone."""
        restart = f"lower the learning rate and train anew ({RESTART_HINT})"
        if batch_files(engine.state.batch, self.image_key):
            return f"check these files for NaN/Inf values, or {restart}"
        return (f"the batch names no files to check (its '{self.image_key}' carries no file names); most likely the "
                f"learning rate is too high: {restart}; else check the training inputs for NaN/Inf values")

    def check_loss(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, Sequence) and output and isinstance(output[0], Mapping):
            output = output[0]  # decollated: every item carries the batch loss
        loss = output.get(self.loss_key) if isinstance(output, Mapping) else None
        if loss is None:
            return
        value = float(loss.detach().float().mean()) if torch.is_tensor(loss) else float(loss)
        if math.isfinite(value):
            return
        from monai.engines.utils import IterationEvents

        untrained = "nothing was trained on it, " if engine.last_event_name == IterationEvents.LOSS_COMPLETED else ""
        raise FloatingPointError(
            f"training loss is {value} at {self._where(engine)}; {untrained}no model was saved from it: "
            f"{self._loss_fix(engine)}"
        )

    def check_weights(self, engine: Engine) -> None:
        tensors = [*self.network.parameters(), *self.network.buffers()]
        floating = [t.detach() for t in tensors if t.is_floating_point()]
        if not floating or bool(torch.stack([torch.isfinite(t).all() for t in floating]).all()):
            return
        name = first_non_finite(dict(self.network.named_parameters())) or first_non_finite(dict(self.network.named_buffers()))
        raise FloatingPointError(
            f"weight {name} became NaN/Inf in the optimiser step of {self._where(engine)}; no model was saved from "
            f"it: lower the learning rate or clip gradients, and train anew ({RESTART_HINT})"
        )
