"""The warnings a computation logs, kept with its result to be said again wherever the result is read back instead
of computed (the disk cache's entries, read by every later run): without them, only the run that computed a result
would say what was wrong with its input.

:func:`warnings_logged` collects, while its block runs, the WARNING-and-above records that the package's loggers emit
in the calling thread: computations running at the same time in other threads (a cache fill's thread pool) keep
their own, and other processes (data-loading workers, ranks) have their own handler; a thread that the computation
starts itself is not followed. Each record is kept as ``[logger name, level, message]``, plain values that
``torch.load(weights_only=True)`` reads back.

:func:`say_again` logs them again through their own loggers, each message once per process: under the
:mod:`~unimiss_monai.utils.once` topic :data:`SAID_AGAIN`, which ranks pool after a dealt-out check
(:func:`~unimiss_monai.data.split_check.shared_failures`) and data-loading workers inherit (fork) or receive with
their data set (spawn, :func:`~unimiss_monai.utils.once.sent_with_said`), so an epoch does not repeat a run's words.
What a computation said live counts as said too: a result computed in this run and read back later in it is not
announced a second time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from unimiss_monai.utils.once import first_time

__all__ = ["SAID_AGAIN", "SAID_TAG", "kept_apart", "kept_with", "say_again", "warnings_logged"]

#: the :mod:`~unimiss_monai.utils.once` topic of the messages said (live or again) in this process: keyed by the whole
#: message, which names its file
SAID_AGAIN = "warning of a stored result"

#: the key of a stored result's warnings beside its ``"value"`` (:func:`kept_with`)
SAID_TAG = "__warnings_said__"

PACKAGE = __name__.split(".")[0]

_collecting = threading.local()  # .said: the list the running computation of this thread collects into
_lock = threading.Lock()  # a fill's threads: one message must pass first_time once, not once per thread


class _Collector(logging.Handler):
    """Appends each record to the list of the computation running in its thread, if any (a handler runs in the
    thread that logs)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            said = getattr(_collecting, "said", None)
            if said is not None:
                said.append([record.name, int(record.levelno), record.getMessage()])
            # a handler of its own makes logging skip its last resort (warnings to stderr where logging was never
            # configured): a plain script would no longer see the warning itself
            if logging.lastResort is not None and record.levelno >= logging.lastResort.level \
                    and not _handled_elsewhere(record.name):
                logging.lastResort.handle(record)
        except Exception:  # noqa: BLE001 - logging's rule: a handler's failure never breaks the code that logs
            self.handleError(record)


def _handled_elsewhere(name: str) -> bool:
    """Whether a record of logger ``name`` reaches a handler other than the collector (logging's own walk)."""
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        if any(not isinstance(h, _Collector) for h in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


# one handler for the process, never removed: adding and removing one per computation would change the logger's
# handler list while other threads' records walk it
_COLLECTOR = _Collector()


@contextmanager
def warnings_logged() -> Iterator[list[list]]:
    """Collect into the yielded list the WARNING-and-above records the package's loggers emit in this thread while
    the block runs, as ``[logger name, level, message]``; they count as said in this process (:func:`say_again`)."""
    logging.getLogger(PACKAGE).addHandler(_COLLECTOR)  # a no-op once there; again after a logging config removed it
    outer, said = getattr(_collecting, "said", None), []
    _collecting.said = said
    try:
        yield said
    finally:
        _collecting.said = outer
        if outer is not None:  # a computation inside another: its words are the outer one's too
            outer.extend(said)
        for _, _, message in said:
            _first_time(message)


def say_again(said: list) -> None:
    """Log each ``[logger name, level, message]`` of ``said`` (what :func:`warnings_logged` collected) through its
    logger, unless this process already said that message."""
    for name, level, message in said:
        if _first_time(message):
            logging.getLogger(name).log(level, "%s", message)


def _first_time(message: str) -> bool:
    with _lock:
        return first_time(SAID_AGAIN, message)


def kept_with(value, said: list):
    """``value`` with the warnings its computation logged, to be stored: ``value`` itself where there are none, as
    results were stored before their warnings were kept."""
    return {SAID_TAG: said, "value": value} if said else value


def kept_apart(stored) -> tuple:
    """``(value, warnings)`` of what :func:`kept_with` made, read back; a result stored without warnings has none."""
    if isinstance(stored, dict) and SAID_TAG in stored:
        return stored["value"], stored[SAID_TAG]
    return stored, []
