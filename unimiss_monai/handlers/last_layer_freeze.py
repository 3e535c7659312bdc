"""Ignite handler: keep the DINO head's last layer fixed during the first epoch(s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["LastLayerFreezeHandler"]


class LastLayerFreezeHandler:
    """Drop the gradients of the head's last layer while ``engine.state.epoch <= freeze_epochs`` (1-based epochs), so
    the optimiser leaves it untouched; this stabilises the start of DINO-style training.

    Gradients are set to ``None`` as in the DINO / UniMiSS reference code, so AdamW also skips weight decay and moment
    updates for those parameters (zeroed gradients would still let weight decay and Adam momentum move them).

    When it runs: after ``backward`` and before ``optimizer.step()``. ``Events.ITERATION_COMPLETED`` fires after the
    step, which is too late, so :meth:`attach` registers on MONAI's ``IterationEvents.BACKWARD_COMPLETED``, which
    ``SupervisedTrainer`` (and any trainer whose iteration fires it) emits between the two. Trainers that do not fire
    that event can call :meth:`cancel_gradients` (``handler.cancel_gradients(epoch)``) themselves at that point.

    Args:
        model: network whose parameters are filtered (the student; DDP-wrapped is fine).
        freeze_epochs: number of initial epochs with the last layer fixed. Defaults to 1.
        name_filter: a substring of parameter names, or a predicate ``f(name) -> bool``. Defaults to ``"last_layer"``.
    """

    def __init__(
        self, model: nn.Module, freeze_epochs: int = 1, name_filter: str | Callable[[str], bool] = "last_layer"
    ) -> None:
        if freeze_epochs < 0:
            raise ValueError(f"freeze_epochs must be >= 0, got {freeze_epochs}.")
        match = (lambda n: name_filter in n) if isinstance(name_filter, str) else name_filter
        self.params = [p for n, p in model.named_parameters() if match(n)]
        if not self.params:
            raise ValueError(
                f"no parameter of {type(model).__name__} matches name_filter={name_filter!r}; "
                "pass the substring of the head's last layer (e.g. 'head.last_layer')."
            )
        self.freeze_epochs = freeze_epochs

    def attach(self, engine: Engine) -> None:
        from monai.engines.utils import IterationEvents

        try:
            engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)
        except ValueError as e:  # a plain ignite Engine never fires it: fail loudly rather than never freezing
            raise ValueError(
                f"{type(engine).__name__} does not fire IterationEvents.BACKWARD_COMPLETED; use a MONAI trainer or "
                "call LastLayerFreezeHandler.cancel_gradients(epoch) between backward and optimizer.step()."
            ) from e

    def cancel_gradients(self, epoch: int) -> bool:
        """Drop the selected gradients if ``epoch`` (1-based) is a frozen epoch; returns whether it did."""
        if epoch > self.freeze_epochs:
            return False
        for p in self.params:
            p.grad = None
        return True

    def __call__(self, engine: Engine) -> None:
        self.cancel_gradients(engine.state.epoch)
