"""What a run has said once: per topic, the keys (file names) already warned of, so that a warning is said once per
file in a run rather than once per process. A check dealt out over ranks pools it
(:func:`~unimiss_monai.data.split_check.shared_failures`), and a data-loading worker receives its parent's (see
``transforms.labels.label_map``): each had said again, every epoch, what another process had said."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["first_time", "is_said", "said", "take_said"]

_SAID: dict[str, set[str]] = {}


def first_time(topic: str, key: str) -> bool:
    """Whether ``key`` is new to ``topic`` in this process (then it is recorded as said)."""
    keys = _SAID.setdefault(topic, set())
    if key in keys:
        return False
    keys.add(key)
    return True


def is_said(topic: str, key: str) -> bool:
    """Whether ``key`` was said of ``topic`` in this process (or taken as said here)."""
    return key in _SAID.get(topic, ())


def said(topic: str | None = None) -> dict[str, list[str]]:
    """``{topic: sorted keys}`` said in this process, of every topic or of ``topic`` alone (picklable)."""
    topics = _SAID if topic is None else {topic: _SAID.get(topic, set())}
    return {name: sorted(keys) for name, keys in topics.items()}


def take_said(other: Mapping[str, Iterable[str]]) -> None:
    """Record what another process said (:func:`said`'s result) as said here too."""
    for topic, keys in other.items():
        _SAID.setdefault(topic, set()).update(keys)
