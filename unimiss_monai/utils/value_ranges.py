"""The ranges of the training settings a user gives (learning rates, decays), in one place for every reader: the
command line of ``monai.bundle run``, the optimizer's parameter groups and the ``label-efficiency`` options. Each of
these would otherwise train, badly or not at all, and fail, if ever, epochs later as a poor or diverged model."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["RANGES", "range_problem"]

_AT_LEAST_0 = (lambda v: v >= 0, "a finite number of at least 0", "a negative decay grows the weights")
_ABOVE_0 = (lambda v: v > 0, "a finite number above 0", "at 0 or below it trains nothing, or away from the minimum")

#: setting -> (whether a finite value is in range, what it must be, why)
RANGES = {
    "layer_decay": (lambda v: 0 < v <= 1, "a number in (0, 1] (1: every layer at the head's rate)",
                    "above 1 the early layers outpace the head, and 0 freezes all but the head"),
    "weight_decay": _AT_LEAST_0,
    "weight_decay_end": _AT_LEAST_0,
    "learning_rate": _ABOVE_0,
    "base_lr": _ABOVE_0,
    "pretrain_lr": _ABOVE_0,
    "min_lr": (lambda v: v >= 0, "a finite number of at least 0", "a negative rate trains away from the minimum"),
}


def range_problem(name: str, value: Any) -> str | None:
    """What setting ``name`` must be, as ``RANGES`` words it, when ``value`` is not a finite number in its range (text
    or a boolean is no number); ``None`` when it is, or ``name`` has no range here."""
    if name not in RANGES:
        return None
    within, wording, _ = RANGES[name]
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    return None if math.isfinite(number) and within(number) else wording
