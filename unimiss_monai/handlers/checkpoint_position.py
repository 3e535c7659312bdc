"""Where a checkpoint's trainer stands against the run that would resume it: the epochs it holds, whether its run
finished, and the one-line refusal of a checkpoint that this run, as it is set, cannot continue."""

from __future__ import annotations

import os
from collections.abc import Mapping

from unimiss_monai.utils.trainer_state import finished, planned_epochs, position

__all__ = ["finished", "planned_epochs", "position_problem"]

_EPOCHS_OPTION = "--train#epochs; --max_epochs in the fine-tuning bundles"


def position_problem(path: str | os.PathLike, trainer_state: Mapping | None, max_epochs: int | None,
                     keeps_schedule: bool) -> str | None:
    """One line refusing to resume the checkpoint ``path`` in a run set to ``max_epochs``, or None.

    Refused: a checkpoint further on than ``max_epochs``. Ignite would refuse one that holds more finished epochs with
    advice about ``engine.state.max_epochs`` that no bundle user can follow; one saved inside the epoch after the last
    (pretraining saves every few iterations) it would end at once, and the run would export a model of neither length.

    With ``keeps_schedule`` (the fine-tuning bundles, whose learning-rate scheduler is restored with its length), also
    a stopped run set to another number of epochs: resumed, it would go on with that run's schedule, and the model of
    this run's length would differ from the one an uninterrupted run writes.
    """
    held = position(trainer_state)
    if held is None or max_epochs is None:
        return None
    done, into = held
    planned = planned_epochs(trainer_state)
    # first: its own length is then the only one that continues it, fewer epochs than it holds included
    if keeps_schedule and planned not in (None, max_epochs) and not finished(trainer_state):
        return (f"cannot resume from {path}: it is the checkpoint of a stopped run of {planned} epoch(s) and this run "
                f"is set to {max_epochs}; resumed, it would train on with that run's learning-rate schedule; run with "
                f"--max_epochs {planned} to continue it, or choose another --output_dir to train {max_epochs} anew")
    needed = done + (1 if into else 0)
    if needed > max_epochs:
        of = f" of {planned}" if planned else ""
        part = f" and {into} iteration(s) of epoch {done + 1}" if into else ""
        return (f"cannot resume from {path}: it holds {done} finished epoch(s){of}{part}, more than the {max_epochs} "
                f"this run is set to; raise the epochs to at least {needed} ({_EPOCHS_OPTION}) to continue it, or "
                "choose another --output_dir to start afresh")
    return None
