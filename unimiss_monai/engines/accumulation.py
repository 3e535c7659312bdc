"""Gradient accumulation windows of the pretraining engines: which iteration opens a window (schedules, ``zero_grad``),
which closes it with an optimiser step, and what an iteration that trains nothing does to its window.

Windows restart each epoch, and an epoch's last window steps even when short: a run-wide count would start the next
epoch part-way and step again on the previous epoch's gradient.
"""

from __future__ import annotations

import logging
from typing import Any

from unimiss_monai.utils.dist import any_rank

__all__ = ["AccumulationWindows"]

# the engines' logger: the messages belong to the run they describe
logger = logging.getLogger("unimiss_monai.engines.pretraining")


class AccumulationWindows:
    """Mixin of :class:`~unimiss_monai.engines.pretraining.PretrainingTrainer` (staticmethods over the engine, as
    MONAI's iteration functions are). The engine provides ``state.iteration``, ``state.epoch_length``,
    ``state.device``, ``accumulation_steps``, ``optimizer``, ``_apply_schedules()`` and ``_optimizer_step(phase)``; the
    phase of the gradients pending in the open window is kept in ``_pending_phase`` (``None``: nothing pending).
    """

    @property
    def mid_window(self) -> bool:
        """Whether the open window holds gradients not yet stepped on. Checkpoints hold no gradients, so one taken
        now would resume with part of the window lost (:class:`~unimiss_monai.handlers.TrainingCheckpoint` waits)."""
        return getattr(self, "_pending_phase", None) is not None

    @staticmethod
    def _start_window(engine: Any) -> bool:
        """Whether this iteration ends its window (a step is due); a window's first iteration sets the schedules and
        calls ``zero_grad``."""
        micro = (engine.state.iteration - 1) % engine.state.epoch_length % engine.accumulation_steps
        if micro == 0:
            engine._apply_schedules()
            engine.optimizer.zero_grad(set_to_none=True)
            engine._pending_phase = None
        return micro == engine.accumulation_steps - 1 or engine.state.iteration % engine.state.epoch_length == 0

    @staticmethod
    def _passed_over(engine: Any, batch: dict, due: bool) -> bool:
        """Whether this iteration trains nothing because its batch held no readable sample (``batch["empty"]``), or,
        under DDP, another process's did; then its window is closed without it.

        Every process passes such an iteration over: DDP pairs each backward's gradient all-reduces across
        processes, so one that skipped alone would pair its next step with the others' current one and hang.
        """
        empty_here = bool(batch.get("empty", False))
        if not any_rank(empty_here, engine.state.device):
            return False
        if not empty_here:
            logger.warning("iteration %d: another process's batch held no readable sample; this one is passed over too, so that the processes stay in step", engine.state.iteration)
        AccumulationWindows._close_window_without_batch(engine, due)
        return True

    @staticmethod
    def _close_window_without_batch(engine: Any, due: bool) -> None:
        """An iteration that trains nothing: where a step is due, step on the window's pending gradients, which the
        next ``zero_grad`` would drop silently."""
        if not due or engine._pending_phase is None:
            return
        logger.warning("iteration %d: nothing to train at the end of an accumulation window; stepping on its earlier micro-batches' gradients", engine.state.iteration)
        engine._optimizer_step(engine._pending_phase)
        engine._pending_phase = None
