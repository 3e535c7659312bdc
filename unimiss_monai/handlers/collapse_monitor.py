"""Warns when self-distillation collapses, from the teacher statistics the pretraining trainer reports."""

from __future__ import annotations

import logging
import math

from ignite.engine import Engine, Events

__all__ = ["CollapseMonitor"]

logger = logging.getLogger(__name__)
#: this monitor's entry in the engine's ``state.epoch_accumulators``
_ACCUMULATOR = "collapse_monitor"


class CollapseMonitor:
    """Checks the epoch means of ``teacher_entropy`` (per-sample) and ``teacher_batch_entropy`` (of the batch-mean
    distribution) from ``engine.state.output``, and stores them in ``engine.state.metrics`` as ``"epoch/<name>"``.

    DINO-style training collapses in two ways (Caron et al. 2021, Sec. 5.3): every sample maps to one prototype (batch
    entropy near 0), or the teacher output becomes uniform (per-sample entropy near ``log(out_dim)``). Either one is
    logged as a warning naming the epoch and the usual fix.

    Args:
        out_dim: number of prototypes ``K``.
        low_fraction: batch entropy below ``low_fraction * log(K)`` counts as collapse to one prototype.
        high_fraction: per-sample entropy above ``high_fraction * log(K)`` counts as uniform collapse.
    """

    def __init__(self, out_dim: int, low_fraction: float = 0.02, high_fraction: float = 0.98) -> None:
        self.log_k, self.low, self.high = math.log(out_dim), low_fraction, high_fraction
        # name -> [sum, count] of this epoch, on an engine without per-epoch accumulators (a plain ignite Engine)
        self.sums: dict[str, list[float]] = {}
        self.collapsed_epochs: list[int] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.check)

    def _epoch_sums(self, engine: Engine) -> dict[str, list[float]]:
        # the pretraining trainer checkpoints ``state.epoch_accumulators`` and clears it at each epoch start, except
        # the one a mid-epoch resume continues: sums kept there cover the whole epoch after a kill and resume
        accumulators = getattr(engine.state, "epoch_accumulators", None)
        return self.sums if accumulators is None else accumulators.setdefault(_ACCUMULATOR, {})

    def _start_epoch(self, engine: Engine) -> None:
        if getattr(engine.state, "epoch_accumulators", None) is None:
            self.sums.clear()

    def record(self, engine: Engine) -> None:
        out = engine.state.output or {}
        sums = self._epoch_sums(engine)
        for k in ("teacher_entropy", "teacher_batch_entropy", "center_norm"):
            if isinstance(out.get(k), float):
                total = sums.setdefault(k, [0.0, 0])
                total[0] += out[k]
                total[1] += 1

    def check(self, engine: Engine) -> None:
        means = {k: total / n for k, (total, n) in self._epoch_sums(engine).items() if n}
        # "epoch/" keeps the epoch means apart from the per-iteration values of the same name in the loggers
        engine.state.metrics.update({f"epoch/{k}": v for k, v in means.items()})
        entropy, batch_entropy = means.get("teacher_entropy"), means.get("teacher_batch_entropy")
        problem = None
        if batch_entropy is not None and batch_entropy < self.low * self.log_k:
            problem = (f"teacher batch entropy {batch_entropy:.3f} nats: all samples on one prototype; raise the teacher "
                       "temperature (the pretraining bundle's --teacher_temp)")
        elif entropy is not None and entropy > self.high * self.log_k:
            problem = (f"teacher entropy {entropy:.3f} of max {self.log_k:.3f} nats: uniform teacher; lower the teacher "
                       "temperature (the pretraining bundle's --teacher_temp) or the learning rate (--base_lr)")
        if problem:
            self.collapsed_epochs.append(engine.state.epoch)
            logger.warning("epoch %d: possible collapse: %s", engine.state.epoch, problem)
