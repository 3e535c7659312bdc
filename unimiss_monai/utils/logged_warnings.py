"""The warnings a computation logs, kept with its result to be said again wherever the result is read back instead
of computed (the disk cache's entries, read by every later run): without them, only the run that computed a result
would say what was wrong with its input.

:func:`warnings_logged` collects, while its block runs, the WARNING-and-above records that the package's loggers emit
in the calling thread: computations running at the same time in other threads (a cache fill's thread pool) keep
their own, and other processes (data-loading workers, ranks) have their own handler; a thread that the computation
starts itself is not followed. Each record is kept as ``[logger name, level, message]``, plain values that JSON
and ``torch.load(weights_only=True)`` read back.

:func:`say_again` logs them again through their own loggers, each message once per process: under the
:mod:`~unimiss_monai.utils.once` topic :data:`SAID_AGAIN`, which ranks pool after a dealt-out check
(:func:`~unimiss_monai.data.split_check.shared_failures`) and data-loading workers inherit (fork) or receive with
their data set (spawn, :func:`~unimiss_monai.utils.once.sent_with_said`); the disk cache says them in the main
process only, as workers started anew each epoch would repeat them. What a computation said live counts as said too:
a result computed in this run and read back later in it is not announced a second time. A warning that a once-per-file
guard does not log again is kept with the result all the same (:func:`note`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from unimiss_monai.utils.once import first_time

__all__ = ["SAID_AGAIN", "SAID_TAG", "collecting", "kept_apart", "note", "say_again", "warnings_logged"]

#: the :mod:`~unimiss_monai.utils.once` topic of the messages said (live or again) in this process: keyed by the whole
#: message, which names its file
SAID_AGAIN = "warning of a stored result"

#: the key of a result's warnings beside its ``"value"`` where the result held them itself (disk-cache entries of one
#: earlier version; they are kept beside the result now, :mod:`~unimiss_monai.data.cache_warnings`)
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


def collecting() -> bool:
    """Whether a computation in this thread collects its warnings (:func:`warnings_logged`)."""
    return getattr(_collecting, "said", None) is not None


def note(logger: logging.Logger, level: int, msg: str, *args) -> None:
    """Keep with the computation running in this thread a warning that is not logged, as a once-per-file guard
    suppresses one said before in this process: the result of that file computed now (for another cache) holds it
    too, for the runs that read only that result. ``msg % args`` as ``logger.log`` would format it."""
    said = getattr(_collecting, "said", None)
    if said is not None and logger.name.split(".")[0] == PACKAGE and level >= logging.WARNING \
            and logger.isEnabledFor(level):
        said.append([logger.name, int(level), msg % args if args else msg])


def say_again(said: list) -> None:
    """Log each ``[logger name, level, message]`` of ``said`` (what :func:`warnings_logged` collected) through its
    logger, unless this process already said that message."""
    for name, level, message in said:
        if _first_time(message):
            logging.getLogger(name).log(level, "%s", message)


def _first_time(message: str) -> bool:
    with _lock:
        return first_time(SAID_AGAIN, message)


def kept_apart(stored) -> tuple:
    """``(value, warnings)`` of a stored result read back: a result that holds its warnings (:data:`SAID_TAG`) is
    unwrapped, any other has none."""
    if isinstance(stored, dict) and SAID_TAG in stored:
        return stored["value"], stored[SAID_TAG]
    return stored, []
