"""What a run has said once: per topic, the keys (file names) already warned of, so that a warning is said once per
file in a run rather than once per process. A check dealt out over ranks pools it
(:func:`~unimiss_monai.data.split_check.shared_failures`), and a data-loading worker receives its parent's with the
transform that says it (:func:`sent_with_said`): each had said again, every epoch, what another process had said."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from multiprocessing.reduction import ForkingPickler

__all__ = ["first_time", "is_said", "said", "sent_with_said", "take_said"]

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


def sent_with_said(cls: type, topic: str) -> None:
    """Have multiprocessing send each ``cls`` object to a process it starts together with what this process said of
    ``topic``: a data-loading worker started by spawn (macOS, Windows, forkserver) imports the modules afresh and said
    each file again, every epoch. Plain pickling is left as it is: the disk cache keys its entries by the transforms
    pickled, which must not change with what was said."""
    ForkingPickler.register(cls, functools.partial(_to_process, topic=topic))


def _to_process(obj: object, topic: str) -> tuple:
    return _from_parent, (type(obj), obj.__dict__, said(topic))


def _from_parent(cls: type, state: dict, parent_said: dict[str, list[str]]) -> object:
    """The object :func:`_to_process` sent, what its sender said taken as said here too."""
    take_said(parent_said)
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj
