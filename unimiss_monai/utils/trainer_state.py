"""Where a saved ignite trainer state (``Engine.state_dict()``, as a resume checkpoint keeps it under ``"trainer"``)
stands: the epochs its run was set to, and whether that run finished."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["finished", "planned_epochs", "position"]


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


def position(trainer_state: Mapping | None) -> tuple[int, int] | None:
    """``(finished epochs, iterations into the next one)`` a saved trainer state holds; None where it says neither its
    iteration and epoch length nor its epoch."""
    iteration, epoch_length = _get(trainer_state, "iteration"), _get(trainer_state, "epoch_length")
    if iteration is not None and epoch_length:
        return divmod(int(iteration), int(epoch_length))
    epoch = _get(trainer_state, "epoch")
    return None if epoch is None else (int(epoch), 0)
