"""Find the first NaN/Inf tensor in a nested structure: one check for checkpoints, exports and guarded weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["first_non_finite"]


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
