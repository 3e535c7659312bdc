"""Find the first NaN/Inf tensor in a nested structure: one check for checkpoints, exports and guarded weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["NonFiniteWeightsError", "first_non_finite", "refuse_non_finite_weights"]


def first_non_finite(obj: Any, prefix: str = "") -> str | None:
    """The dotted name of the first floating-point tensor in ``obj`` (a tensor, or mappings / sequences of them) that
    holds NaN or Inf, or ``None`` when every one is finite. Numbers and strings are not checked.

    Examples::

        >>> first_non_finite({"a": [torch.ones(1), {"b": torch.tensor([float("nan")])}]})
        'a.1.b'
    """
    if torch.is_tensor(obj):
        return (prefix or "tensor") if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else None
    if isinstance(obj, Mapping):
        items: Iterable = obj.items()
    elif isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


class NonFiniteWeightsError(ValueError):
    """Weights read from a file hold NaN or Inf: the run that wrote them diverged, and no option of this run helps."""


def refuse_non_finite_weights(state: Any, named: str) -> None:
    """Raise :class:`NonFiniteWeightsError` (one line) when a tensor of ``state`` holds NaN or Inf.

    A NaN network is refused before anything runs on it: it predicts empty masks that are scored as results and ranks
    every image as certain. ``named`` says which file, e.g. ``"trained model /x/model.pt"``.
    """
    if (bad := first_non_finite(state)) is not None:
        raise NonFiniteWeightsError(
            f"{named}: tensor {bad} holds NaN or Inf; the run that wrote it diverged: use an earlier checkpoint or train again"
        )
