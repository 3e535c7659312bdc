"""Ignite handler: EMA update of the teacher from the student after every optimiser step."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from unimiss_monai.utils.ema import update_momentum
from unimiss_monai.utils.schedules import momentum_schedule

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["TeacherEMAHandler"]


class TeacherEMAHandler:
    """Update ``teacher = m * teacher + (1 - m) * student`` on ``Events.ITERATION_COMPLETED`` (after the optimiser
    step of that iteration), with ``m`` taken from a schedule of the 0-based global iteration.

    Without ``momentum_fn`` the momentum follows :func:`~unimiss_monai.utils.momentum_schedule` from
    ``base_momentum`` to ``final_momentum`` over ``max_steps`` (default: ``max_epochs * epoch_length`` of the engine,
    read when the run starts). The last value used is kept in ``engine.state.teacher_momentum``.

    Args:
        student: network being optimised (DDP-wrapped is fine).
        teacher: EMA copy with the same parameter names.
        momentum_fn: ``f(step) -> m``; overrides the built-in cosine schedule.
        base_momentum: first momentum of the built-in schedule. Defaults to 0.996.
        final_momentum: last momentum of the built-in schedule. Defaults to 1.0.
        max_steps: length of the built-in schedule. Defaults to the engine's total iterations.

    Examples::

        >>> TeacherEMAHandler(student, teacher, base_momentum=0.996).attach(trainer)
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        momentum_fn: Callable[[int], float] | None = None,
        base_momentum: float = 0.996,
        final_momentum: float = 1.0,
        max_steps: int | None = None,
    ) -> None:
        if not (0.0 <= base_momentum <= 1.0 and 0.0 <= final_momentum <= 1.0):
            raise ValueError(f"momentum must be in [0, 1], got base={base_momentum}, final={final_momentum}.")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}.")
        self.student, self.teacher = student, teacher
        self.momentum_fn = momentum_fn
        self.base_momentum, self.final_momentum = base_momentum, final_momentum
        self.max_steps = max_steps

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def momentum(self, step: int, engine: Engine | None = None) -> float:
        """Momentum for the 0-based global ``step``."""
        if self.momentum_fn is not None:
            return float(self.momentum_fn(step))
        max_steps = self.max_steps
        if max_steps is None:
            if engine is None or engine.state.epoch_length is None:
                raise ValueError("TeacherEMAHandler needs max_steps when the engine has no epoch_length.")
            max_steps = engine.state.max_epochs * engine.state.epoch_length
        return momentum_schedule(step, max_steps, self.base_momentum, self.final_momentum)

    def __call__(self, engine: Engine) -> None:
        m = self.momentum(engine.state.iteration - 1, engine)
        update_momentum(self.student, self.teacher, m)
        engine.state.teacher_momentum = m
