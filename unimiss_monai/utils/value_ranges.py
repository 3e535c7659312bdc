"""The ranges of the training settings a user gives (learning rates, decays), in one place for every reader: the
command line of ``monai.bundle run``, the optimizer's parameter groups and the ``label-efficiency`` options. Each of
these would otherwise train, badly or not at all, and fail, if ever, epochs later as a poor or diverged model. So is
the range of a radiograph's pixel size, which both a file's header and the DRR bundle's ``--pixel_spacing`` give."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["RANGES", "XRAY_SPACING_MM", "range_problem"]

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


#: pixel sizes (mm) a radiograph can have. Detectors have 0.05-1 mm pixels; DRRs rendered here are coarser (the tests
#: render 6-20 mm pixels) but a DRR of 16 pixels, the fewest a radiograph may have along a side, across an 800 mm
#: field still has 50 mm ones. Below 0.01 mm the file is in metres (0.00015 for 0.15 mm); above 50 mm it is in
#: micrometres (150 for 0.15 mm) or broken, and distances (HD95) would come out thousands of times too large
XRAY_SPACING_MM = (0.01, 50.0)


def range_problem(name: str, value: Any) -> str | None:
    """What setting ``name`` must be, as ``RANGES`` words it, when ``value`` is not a finite number in its range (text
    or a boolean is no number); ``None`` when it is, or ``name`` has no range here."""
    if name not in RANGES:
        return None
    within, wording, _ = RANGES[name]
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    return None if math.isfinite(number) and within(number) else wording
