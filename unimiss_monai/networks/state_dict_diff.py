"""How a state dict differs from a reference one (a freshly built network's): the comparison the commands that check
weights before writing or tracing them share. Each caller words its own refusal from the differences."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = ["StateDictDifferences", "is_position_embedding", "state_dict_differences"]


class StateDictDifferences(NamedTuple):
    """Sorted key lists: in the reference only, in the state dict only, in both but of another shape."""

    missing: list[str]
    unexpected: list[str]
    shape: list[str]


def is_position_embedding(key: str) -> bool:
    """Whether ``key`` is a backbone position embedding, whose shape may differ: ``load_pretrained`` resizes it to the
    model's grid."""
    return "pos_embeds" in key


def state_dict_differences(
    reference: Mapping[str, Any], state: Mapping[str, Any], resizable: Callable[[str], bool] | None = None
) -> StateDictDifferences:
    """The keys of ``state`` (tensors) that do not fit ``reference``; a key for which ``resizable`` is true may be of
    another shape."""
    common = set(reference) & set(state)
    shape = sorted(k for k in common if tuple(reference[k].shape) != tuple(state[k].shape)
                   and not (resizable is not None and resizable(k)))
    return StateDictDifferences(sorted(set(reference) - common), sorted(set(state) - common), shape)
