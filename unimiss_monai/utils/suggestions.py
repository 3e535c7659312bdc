"""The ``did you mean`` of a command-line key that names no config id: the ids closest to what the user meant.

A bundle's configs nest some settings (the pretraining bundle's ``train#epochs``) that another bundle keeps at the
top (the fine-tune bundles' ``max_epochs``), so a user coming from one bundle types the other's name. Spelling alone
then points at the wrong id: ``--epochs`` is closest to ``warmup_epochs``, and following that hint changes the
warm-up, not the run's length. An id whose last ``#`` part is the key comes first.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["did_you_mean"]

# names this alike are one name misspelt (epoch, epochs: 0.91), not two settings of a family (epochs, max_epochs: 0.75)
_NEAR_LEAF = 0.85


def _holds_value(value: Any) -> bool:
    """Whether an id of value ``value`` is where a setting is given: not a reference to another id (``@x``), an
    expression, or a component; overriding those would cut them off from the id they follow."""
    if isinstance(value, Mapping):
        return False
    return not (isinstance(value, str) and value.startswith(("$", "@", "%")))


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _alike(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are one name, perhaps misspelt (epoch, epochs), not two of a family (epochs,
    max_epochs)."""
    return _similarity(a, b) >= _NEAR_LEAF


def _by_last_part(key: str, candidates: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """Ids of ``candidates`` whose last ``#`` part is ``key``, else nearly ``key``, else the last word of ``key``
    (``max_epochs``: ``train#epochs``), best first; nested ones only where they hold a value. ``[]`` for a nested
    ``key``."""
    if "#" in key:
        return []
    leaves = {c: c.rsplit("#", 1)[-1] for c in candidates if "#" not in c or _holds_value(values.get(c))}
    near = {leaf: _similarity(key, leaf) for leaf in set(leaves.values())}
    for matches in ([c for c, leaf in leaves.items() if leaf == key],
                    [c for c, leaf in leaves.items() if _alike(key, leaf)],
                    [c for c, leaf in leaves.items() if "_" in key and _alike(key.rsplit("_", 1)[1], leaf)]):
        if matches:
            # of ids sharing a last part the shallowest (output_dir, not a handler's copy), and the runners-up only
            # when about as close as the best
            depth = {leaves[c]: min(m.count("#") for m in matches if leaves[m] == leaves[c]) for c in matches}
            matches = [c for c in matches if c.count("#") == depth[leaves[c]]]
            matches.sort(key=lambda c: (-near[leaves[c]], c))
            return [c for c in matches if near[leaves[c]] >= near[leaves[matches[0]]] - 0.05][:3]
    return []


def did_you_mean(key: str, candidates: Sequence[str], flags: bool = False,
                 values: Mapping[str, Any] | None = None) -> str:
    """``"; did you mean 'a' or 'b'?"`` naming the ids of ``candidates`` closest to ``key``, or ``""`` when none is
    close.

    Args:
        key: the id the user gave.
        candidates: the ids (and run arguments) it could have meant.
        flags: name them as options (``--a``) rather than ids.
        values: id -> its value in the configs. Given, a nested id holding a value whose last part is ``key`` (or
            nearly, or the key's last word) comes before the ids spelled like ``key``; those as deep in ``#`` as
            ``key`` come before the rest.
    """
    close = _by_last_part(key, candidates, values) if values is not None else []
    if not close:
        depth = key.count("#")
        same_depth = [c for c in candidates if c.count("#") == depth]
        close = difflib.get_close_matches(key, same_depth, n=3) or difflib.get_close_matches(key, candidates, n=3)
        if not close:
            return ""
        # the runners-up only when about as close as the best (num_epoch: max_epochs 0.74, warmup_epochs 0.64)
        ratios = [difflib.SequenceMatcher(None, key, c).ratio() for c in close]
        close = [c for c, r in zip(close, ratios) if r >= ratios[0] - 0.05]
    names = [f"--{c}" if flags else repr(c) for c in close]
    return "; did you mean " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]) + "?"
