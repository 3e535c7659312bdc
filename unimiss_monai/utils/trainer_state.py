"""Where a saved ignite trainer state (``Engine.state_dict()``, as a resume checkpoint keeps it under ``"trainer"``)
stands: the epochs its run was set to, and whether that run finished."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["epochs_done", "finished", "planned_epochs"]


def _get(trainer_state: Mapping | None, key: str):
    return trainer_state.get(key) if isinstance(trainer_state, Mapping) else None


def planned_epochs(trainer_state: Mapping | None) -> int | None:
    """The ``max_epochs`` the run that saved ``trainer_state`` was set to."""
    planned = _get(trainer_state, "max_epochs")
    return None if planned is None else int(planned)


def finished(trainer_state: Mapping | None) -> bool:
    """Whether a saved ignite trainer state reached its ``max_epochs``."""
    iteration, epoch_length = _get(trainer_state, "iteration"), _get(trainer_state, "epoch_length")
    planned = planned_epochs(trainer_state)
    return None not in (iteration, epoch_length, planned) and iteration >= epoch_length * planned


def epochs_done(trainer_state: Mapping | None) -> int | None:
    """The epochs a saved trainer state has finished; None where it says neither its iteration and epoch length nor
    its epoch."""
    iteration, epoch_length = _get(trainer_state, "iteration"), _get(trainer_state, "epoch_length")
    if isinstance(iteration, int) and isinstance(epoch_length, int) and epoch_length > 0:
        return iteration // epoch_length
    epoch = _get(trainer_state, "epoch")
    return epoch if isinstance(epoch, int) else None
