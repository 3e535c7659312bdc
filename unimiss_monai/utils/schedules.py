"""Pure step schedules for self-supervised pretraining (learning rate, weight decay, EMA momentum, teacher
temperature), and the learning-rate scaling and step counts a config derives them from.

Steps are 0-based. Values match the DINO / UniMiSS reference schedules (``utils.cosine_scheduler``): the cosine runs
over ``max_steps`` and any step at or past ``max_steps`` returns the final value.
"""

from __future__ import annotations

import math

__all__ = [
    "cosine_schedule",
    "momentum_schedule",
    "optimizer_steps",
    "scaled_lr",
    "teacher_temperature_schedule",
    "warmup_cosine_schedule",
]


def _check_step(step: float, max_steps: float) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}.")


def cosine_schedule(step: float, max_steps: float, start: float, end: float) -> float:
    """Half-cosine from ``start`` (step 0) towards ``end``: ``end + (start - end) * (1 + cos(pi * step / max_steps)) / 2``.

    Args:
        step: current step (0-based).
        max_steps: length of the schedule; steps ``>= max_steps`` return ``end``.
        start: value at step 0.
        end: value reached at ``max_steps``.
    """
    _check_step(step, max_steps)
    if step >= max_steps:
        return float(end)
    return float(end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * step / max_steps)))


def warmup_cosine_schedule(
    step: float, warmup_steps: float, max_steps: float, base: float, final: float, warmup_start: float = 0.0
) -> float:
    """Linear warm-up from ``warmup_start`` to ``base`` over ``warmup_steps`` (endpoint included, so step
    ``warmup_steps - 1`` is ``base`` when ``warmup_steps > 1``), then a half-cosine from ``base`` to ``final`` over the remaining steps.

    Args:
        step: current step (0-based).
        warmup_steps: warm-up length (0 disables it); must be ``< max_steps``.
        max_steps: total schedule length.
        base: peak value (e.g. the batch-scaled learning rate).
        final: value at the end (e.g. ``min_lr``).
        warmup_start: value at step 0. Defaults to 0.
    """
    _check_step(step, max_steps)
    if not 0 <= warmup_steps < max_steps:
        raise ValueError(f"warmup_steps must be in [0, max_steps={max_steps}), got {warmup_steps}.")
    if step < warmup_steps:
        if warmup_steps <= 1:  # a one-step warm-up is just its start value (numpy linspace of length 1)
            return float(warmup_start)
        return float(warmup_start + (base - warmup_start) * step / (warmup_steps - 1))
    return cosine_schedule(step - warmup_steps, max_steps - warmup_steps, base, final)


def momentum_schedule(step: float, max_steps: float, base: float = 0.996, final: float = 1.0) -> float:
    """Teacher EMA momentum: half-cosine from ``base`` to ``final`` (DINO: 0.996 -> 1; use a higher base such as
    0.9995 with small batches)."""
    if not 0.0 <= base <= 1.0 or not 0.0 <= final <= 1.0:
        raise ValueError(f"momentum values must be in [0, 1], got base={base}, final={final}.")
    return cosine_schedule(step, max_steps, base, final)


def teacher_temperature_schedule(
    step: float, warmup_steps: float, warmup_temp: float = 0.04, final_temp: float = 0.04
) -> float:
    """Teacher temperature: linear from ``warmup_temp`` to ``final_temp`` over ``warmup_steps`` (endpoint included),
    constant afterwards. Usually stepped per epoch (UniMiSS+: 0.04 throughout; DINO: 0.04 -> 0.07 over 30 epochs).
    Temperatures above 0.07 tend to be unstable."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
    if warmup_temp <= 0 or final_temp <= 0:
        raise ValueError(f"temperatures must be > 0, got warmup_temp={warmup_temp}, final_temp={final_temp}.")
    if step >= warmup_steps:
        return float(final_temp)
    if warmup_steps == 1:
        return float(warmup_temp)
    return float(warmup_temp + (final_temp - warmup_temp) * step / (warmup_steps - 1))


def scaled_lr(base_lr: float, batch_size: int, accumulation_steps: int = 1, world_size: int = 1,
              floor: float = 0.0) -> float:
    """Square-root batch scaling of the learning rate, ``max(floor, base_lr * sqrt(effective_batch / 256))`` with
    ``effective_batch = batch_size * accumulation_steps * world_size``.

    The square root (not DINO's linear rule) keeps the small batches of 3D pretraining from shrinking the rate to
    nothing; ``floor`` bounds it from below for the same reason.

    Examples::

        >>> scaled_lr(5e-4, 64, accumulation_steps=2, world_size=2)  # effective batch 256
        0.0005
    """
    effective = int(batch_size) * int(accumulation_steps) * int(world_size)
    if effective < 1:
        raise ValueError(f"batch_size * accumulation_steps * world_size must be >= 1, got {effective}.")
    return max(float(floor), float(base_lr) * (effective / 256) ** 0.5)


def optimizer_steps(epochs: int, epoch_length: int, accumulation_steps: int = 1) -> int:
    """Optimiser steps of a run (the ``max_steps`` of its schedules): ``epochs * ceil(epoch_length /
    accumulation_steps)``, since the trainers step at the end of every epoch, a short last window included."""
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}.")
    return int(epochs) * math.ceil(int(epoch_length) / int(accumulation_steps))
