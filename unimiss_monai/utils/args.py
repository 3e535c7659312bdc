"""Reading bundle config values that arrive as strings from the command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["as_bool", "as_count", "as_sizes", "choose", "optional_path"]

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


def as_bool(value: Any, name: str) -> bool:
    """``value`` of config id ``name`` as a bool.

    ``python -m monai.bundle run --save_saliency false`` hands the config the string ``"false"``, which Python counts
    as true; a config reads a boolean id through ``"$unimiss_monai.utils.as_bool(@save_saliency, 'save_saliency')"``
    instead of ``"@save_saliency"``.

    Args:
        value: ``True``/``False``, ``0``/``1``, or one of ``true``, ``false``, ``yes``, ``no``, ``1``, ``0`` in any
            case (surrounding blanks ignored).
        name: the config id, named in the error.

    Raises:
        ValueError: for any other value (``None``, ``2``, ``"maybe"``, ...).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"config id {name!r} is {value!r}, not a boolean; use true/false, yes/no or 1/0 (any case)")


def as_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` of option ``name`` (as the user types it, e.g. ``--max_epochs``) as a whole number of at least
    ``minimum``: an int, or text of one (``"3"``); a one-line ``ValueError`` naming the option for anything else
    (``"abc"``, ``2.5``, ``True``, ``0``)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value)
    if number is None or number < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}, got {value!r}")
    return number


def as_sizes(value: Any, count: int, name: str, example: str) -> tuple[int, ...]:
    """``value`` of option ``name`` as ``count`` whole numbers of at least 1: a list or tuple, or text ``"16,96,96"``
    (fire gives ``16,96`` a tuple and ``16`` an int); a one-line ``ValueError`` naming the option and ``example`` for
    anything else."""
    sizes = value.split(",") if isinstance(value, str) else value
    sizes = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
    if len(sizes) != count:
        words = {2: "two", 3: "three"}.get(count, str(count))
        raise ValueError(f"{name} takes {words} sizes ({example}), got {value!r}")
    prefix, _, option = name.rpartition(" ")  # "bench-pretrain: --ct_roi" -> "bench-pretrain: each --ct_roi size"
    return tuple(as_count(s, f"{prefix} each {option} size".lstrip()) for s in sizes)


def choose(options: Mapping[str, Any], value: Any, name: str) -> Any:
    """``options[value]`` for config id ``name``, or a one-line ``ValueError`` listing the valid values."""
    if value not in options:
        raise ValueError(f"config id {name!r} must be one of {', '.join(map(str, options))}, got {value!r}")
    return options[value]


def optional_path(value: Any) -> str | None:
    """``value`` as a path, or ``None`` for ``None``, ``""`` and the words ``null`` / ``none`` (any case) where no such
    file exists: ``python -m monai.bundle run --pretrained_path null`` hands the config the word, not ``None``. A
    leading ``~`` is the home folder, as the shell would have made it had the path not been quoted."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value)
    if text.strip().lower() in ("null", "none") and not os.path.exists(text):
        return None
    return os.path.expanduser(text)
