"""One line on stderr for errors a user can fix: a wrong path, a refused value, a bad input file.

``python -m monai.bundle run`` wraps every error raised while a config is evaluated in ``RuntimeError("Failed to
evaluate ...")`` / ``RuntimeError("Failed to instantiate ...")`` (and a transform's error in ``RuntimeError("applying
transform ...")``), so a one-line message of this package reaches the user at the bottom of a long traceback whose last
line is the generic wrapper. :func:`install_error_hook` makes such errors print as ``error: <message>`` instead; any
other error keeps its traceback, a Ctrl-C prints :data:`INTERRUPTED` (SIGTERM its own line), and
``UNIMISS_TRACEBACK=1`` restores the traceback for all of them.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from unimiss_monai.utils import stop_signal
from unimiss_monai.utils.temporary_names import is_temporary_name

__all__ = ["INTERRUPTED", "TRACEBACK_ENV", "case_failure_reason", "exception_chain", "failed_transform",
           "failure_reason", "in_package_code", "install_error_hook", "own_file_error", "raised_by_package",
           "root_cause", "user_error_message"]

TRACEBACK_ENV = "UNIMISS_TRACEBACK"
#: said for Ctrl-C instead of its traceback; Python still ends the process as killed by SIGINT (exit status 130)
#: what a Ctrl-C prints: what was written stays (each file is written whole), and the same command goes on
INTERRUPTED = ("interrupted (Ctrl-C); run the same command again to go on: training resumes from its last "
               "checkpoint, DRR generation skips the CTs done")
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
# the messages MONAI (and torch's DataLoader) put around the error that was actually raised
_WRAPPERS = ("Failed to evaluate", "Failed to instantiate", "applying transform")
_USER_TYPES = (ValueError, FileNotFoundError, FileExistsError, KeyError)
# the readers' errors for a file that is not the image it claims to be (PIL, nibabel), told by name: neither is imported
_READER_TYPE_NAMES = {"UnidentifiedImageError", "ImageFileError"}
_USER_TYPE_NAMES = {"ValueError", "FileNotFoundError", "FileExistsError", "KeyError", *_READER_TYPE_NAMES}
# built-in errors that are the user's to fix only when this package raised them, with a message that says the fix: a
# RuntimeError of ours names the file or setting, a FloatingPointError of ours a loss or weight gone NaN/Inf in training
# (too high a learning rate, or bad inputs); numpy's own ("overflow encountered in exp") is a bug, and keeps its trace
_OWN_TYPES = (RuntimeError, FloatingPointError)
_OWN_TYPE_NAMES = {t.__name__ for t in _OWN_TYPES}
# the file system's refusals of a place, which a user fixes by choosing another or mending it, not by reading code
_FULL_OR_READ_ONLY = {errno.EROFS, errno.ENOSPC, errno.EDQUOT}
_NOT_PERMITTED = {errno.EACCES, errno.EPERM}
_WORKER_HEAD = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*): (?P<message>.*)$")
_FILE_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+')
_APPLYING = re.compile(r"^applying transform <?([\w.]+)")
# an OSError as str() gives it, with one file name or two (a rename: the first is the one refused)
_ERRNO_TEXT = re.compile(r"^\[Errno (?P<code>\d+)\] (?P<strerror>[^:]+)(?:: '(?P<file>[^']+)'(?: -> '[^']+')?)?$")
_OS_ERROR_NAMES = {"OSError", "PermissionError"}


def exception_chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions behind it, outermost first: ``raise ... from`` causes, and the exception being
    handled when ``err`` was raised unless that context was suppressed (``from None``). Stops at a cycle."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception of :func:`exception_chain`: what actually went wrong behind MONAI's ``applying
    transform``, ``Failed to evaluate`` and ``Failed to instantiate`` wrappers."""
    *_, last = exception_chain(err)
    return last


def failed_transform(err: BaseException) -> str | None:
    """The class name of the innermost transform MONAI's ``applying transform <...>`` wrappers name in the chain of
    ``err`` (e.g. ``"LoadImaged"``), or ``None`` when the error did not come out of a ``Compose``."""
    names = [m.group(1).rsplit(".", 1)[-1] for e in exception_chain(err) if (m := _APPLYING.match(str(e)))]
    return names[-1] if names else None


def failure_reason(err: BaseException) -> str:
    """One line saying why a case failed: ``"<Type>: <first line of the message>"`` of :func:`root_cause`."""
    cause = root_cause(err)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def own_file_error(err: BaseException, files: Iterable[str]) -> str | None:
    """The one-line message of this package's own user error behind ``err`` (:func:`user_error_message`: a refused
    file, value or grid) when it names one of ``files`` (paths), else ``None``. Such a message names the file at
    fault and the fix; its type (``ValueError``, ``CTInputError``) would only stand between the two."""
    exc = _reported(err)
    if not (type(exc).__module__.split(".")[0] == "unimiss_monai" or _raised_in_package(exc.__traceback__)):
        return None  # another library's error: its type is part of what went wrong
    message = user_error_message(err)
    line = message.strip().splitlines()[0].strip() if message and message.strip() else ""
    return line if line and any(f and _names_path(line, str(f)) for f in files) else None


def _names_path(text: str, path: str) -> bool:
    """Whether ``text`` names ``path`` itself, not a longer name it begins (``/d/ct1`` in ``/d/ct10.nii.gz``)."""
    return re.search(re.escape(path) + r"(?![\w.\-])", text) is not None


def case_failure_reason(err: BaseException, case: str, files: Iterable[str] = ()) -> str:
    """One line saying why the case ``case`` (its input path) failed, naming the file at fault once: this package's
    own error about ``case`` or one of its ``files`` (its label, say) as its message alone (:func:`own_file_error`),
    any other as :func:`failure_reason` (the type says it was unexpected) after ``case`` unless that names it."""
    own = own_file_error(err, [case, *files])
    if own:
        return own
    reason = failure_reason(err)
    return reason if not case or case in reason else f"{case}: {reason}"


def _is_wrapper(message: str) -> bool:
    return message.startswith(_WRAPPERS)


def _reported(err: BaseException) -> BaseException:
    """The exception a user is told of: the first in the chain of ``err`` that is none of MONAI's wrappers (an error
    raised while handling another is the one to report), else the root cause."""
    return next((e for e in exception_chain(err) if not (isinstance(e, RuntimeError) and _is_wrapper(str(e)))),
                root_cause(err))


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        # str(KeyError) is the repr of its argument; only a sentence is a message, a bare key is a bug
        arg = exc.args[0] if len(exc.args) == 1 else None
        return arg if isinstance(arg, str) and " " in arg.strip() else ""
    return str(exc)


def in_package_code(filename: str) -> bool:
    """Whether ``filename`` (a code object's or a warning's, as Python records it) is a module of this package."""
    return filename.startswith(_PACKAGE_DIR)


def _raised_in_package(tb: TracebackType | None) -> bool:
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and in_package_code(last.tb_frame.f_code.co_filename)


def raised_by_package(err: BaseException) -> bool:
    """Whether the root cause of ``err`` is this package's (its class, or raised in its code), whose messages say the
    fix, rather than a reader's or another library's, whose words say only what broke."""
    cause = root_cause(err)
    return type(cause).__module__.split(".")[0] == "unimiss_monai" or _raised_in_package(cause.__traceback__)


def _one_line(message: str) -> str | None:
    message = message.strip()
    return message if message and "\n" not in message else None


def _from_worker_text(text: str) -> str | None:
    """The user message inside torch's re-raised DataLoader worker error, whose text is the worker's formatted
    traceback: exception blocks, innermost first, each ending in ``Type: message``."""
    blocks = re.split(r"\n\n(?:The above exception was the direct cause|During handling of the above exception)"
                      r"[^\n]*\n\n", text)
    for block in reversed(blocks):
        lines = block.rstrip().splitlines()
        found = next(((i, m) for i in range(len(lines) - 1, -1, -1) if (m := _EXC_LINE.match(lines[i]))), None)
        if found is None:
            return None
        index, match = found
        kind, message = match["type"], match["message"]
        if kind == "RuntimeError" and _is_wrapper(message):
            continue
        if (place := _worker_place_problem(kind, message)) is not None:
            return place
        files = [f["file"] for line in lines[:index] if (f := _FILE_LINE.match(line))]
        in_package = bool(files) and in_package_code(files[-1])
        if kind == "KeyError":
            message = message.strip("'\"") if " " in message else ""
        user = (kind.rsplit(".", 1)[-1] in _USER_TYPE_NAMES or kind.startswith("unimiss_monai.")
                or (kind in _OWN_TYPE_NAMES and in_package))
        return _one_line(message) if user and index == len(lines) - 1 else None
    return None


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of ``exc`` when its root cause is an error a user can fix, else ``None``.

    The root cause is found by following ``__cause__`` / ``__context__`` through MONAI's ``RuntimeError`` wrappers
    (``Failed to evaluate``, ``Failed to instantiate``, ``applying transform``) and through torch's re-raised
    DataLoader worker errors. A user can fix a ``ValueError``, ``FileNotFoundError``, ``FileExistsError``, a
    ``KeyError`` whose argument is a sentence and a ``RuntimeError`` or ``FloatingPointError`` (a loss or weight gone
    NaN/Inf in training) raised by this package, provided the message is one line, and an error class of this
    package, whose message may list several lines (the cases that failed).

    Args:
        exc: the uncaught exception.
    """
    exc = _reported(exc)  # only MONAI's own wrappers are looked through
    if not isinstance(exc, Exception):
        return None
    text = str(exc)
    if _WORKER_HEAD.match(text):
        return _from_worker_text(text.split("\n", 1)[1])
    if type(exc).__module__.split(".")[0] == "unimiss_monai":
        # this package's own error classes compose their messages for the user, a list of failed cases included
        return _message(exc).strip() or None
    if (place := _place_problem(exc)) is not None:
        return place
    user = (isinstance(exc, _USER_TYPES) or type(exc).__name__ in _READER_TYPE_NAMES
            or (type(exc) in _OWN_TYPES and _raised_in_package(exc.__traceback__)))
    return _one_line(_message(exc)) if user else None


def _place_problem(exc: BaseException) -> str | None:
    """One line for an ``OSError`` that refuses a place (a read-only or full file system, no permission), naming the
    place; None for any other error. A hidden file named there is this package's temporary beside an output (written
    first, then renamed): its folder is what the user chose, and what they can change."""
    if not (isinstance(exc, OSError) and exc.errno in _FULL_OR_READ_ONLY | _NOT_PERMITTED):
        return None
    full = exc.errno != errno.EROFS and exc.errno in _FULL_OR_READ_ONLY
    if not exc.filename:
        # a write() names no file; a full disk is still the user's to mend, a refusal without a place is not said
        return (f"{exc.strerror.lower()} while writing; free space where the output goes (or, for temporary files, in "
                f"{_temporary_folder()}: set TMPDIR to a folder with room), or choose another place") if full else None
    path = Path(os.fsdecode(exc.filename))
    place = f"the folder {path.parent}" if is_temporary_name(path.name) else str(path)
    if exc.errno in _NOT_PERMITTED:
        return f"{place}: {exc.strerror.lower()}; mend its permissions (or its folder's), or choose another place"
    fix = "choose another place for the output" + (", or free space there" if full else "")
    if full and _made_by_tempfile(path):  # no option names that place: TMPDIR does
        fix = "free space there, or set TMPDIR to a folder with room"
    return f"cannot write in {place} ({exc.strerror.lower()}); {fix}"


def _temporary_folder() -> str:
    """Where temporary files go, without :func:`tempfile.gettempdir`'s first look, which writes a test file in each
    candidate folder: on a full disk it fails too, inside the error hook."""
    return tempfile.tempdir or next((os.environ[v] for v in ("TMPDIR", "TEMP", "TMP") if os.environ.get(v)), "/tmp")


def _made_by_tempfile(path: Path) -> bool:
    """Whether ``path`` lies in a file or folder that :mod:`tempfile` made in the temporary folder (named ``tmp...``),
    not in an output folder a user chose there (``/tmp/run``)."""
    try:
        below = path.relative_to(_temporary_folder())
    except ValueError:
        return False
    return bool(below.parts) and below.parts[0].startswith("tmp")


def _worker_place_problem(kind: str, message: str) -> str | None:
    """:func:`_place_problem` of an ``OSError`` a DataLoader worker re-raised as text (``PermissionError: [Errno 13]
    Permission denied: '/data/ct.nii.gz'``)."""
    match = _ERRNO_TEXT.match(message)
    if kind.rsplit(".", 1)[-1] not in _OS_ERROR_NAMES or match is None:
        return None
    return _place_problem(OSError(int(match["code"]), match["strerror"], match["file"]))


def _close_progress_bars() -> None:
    """Close open tqdm bars (ignite's ProgressBar, dataset caching): their last redraw would otherwise come after the
    message, at exit, and the message would start mid-line after the bar's carriage return."""
    std = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(std, "tqdm", None), "_instances", ()) or ()):
        try:
            bar.close()
        except Exception:  # a half-closed bar must not hide the message
            pass


def _hook(previous):
    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if _traceback_wanted():
            message = None
        elif isinstance(value, KeyboardInterrupt):  # the user's own Ctrl-C: where it struck is no news to them
            message = INTERRUPTED
        else:
            try:
                message = user_error_message(value)
            except Exception:  # the hook never hides the error it reports: its own failure leaves the traceback
                message = None
        if message is None:
            previous(kind, value, tb)
            return
        _close_progress_bars()
        head = message if message is INTERRUPTED else f"error: {message}"
        sys.stderr.write(f"{head}\n(set {TRACEBACK_ENV}=1 for the full traceback)\n")
        sys.stderr.flush()

    excepthook.unimiss_error_hook = True  # type: ignore[attr-defined]
    return excepthook


def _traceback_wanted() -> bool:
    return os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0")


def _without_user_tracebacks(previous):
    """A log record factory that leaves the traceback out of the record MONAI's ``StatsHandler`` logs for the error
    that ends an engine's run (``exception_raised``, which re-raises it), when that error is one a user can fix: the
    hook prints its one line at exit. Every other record is left as it is, tracebacks of caught errors included."""
    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            error = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
            if (record.funcName != "exception_raised" or not record.pathname.endswith("stats_handler.py")
                    or not isinstance(error, (Exception, KeyboardInterrupt, stop_signal.Terminated))
                    or _traceback_wanted()):
                return record
            stopped = {KeyboardInterrupt: INTERRUPTED, stop_signal.Terminated: stop_signal.TERMINATED}
            said = next((text for kind, text in stopped.items() if isinstance(error, kind)), None)
            if said is not None:
                record.msg, record.args, record.exc_info = said, None, None
                return record
            message = user_error_message(error)
            if message is not None:
                # "Exception: applying transform <...>" says what MONAI wrapped, not why; a DataLoader worker's error
                # holds the worker's whole traceback as its text: its first line only
                text = record.getMessage()
                head = text.splitlines()[0] if text else text
                record.msg = text if message in text and "\n" not in text else f"{head}: {message}"
                record.args, record.exc_info = None, None
        except Exception:  # a record is never lost to this: logging goes on as it would without the factory
            pass
        return record

    factory.unimiss_error_hook = True  # type: ignore[attr-defined]
    return factory


def install_error_hook() -> None:
    """Make this process print an uncaught error a user can fix (see :func:`user_error_message`) as two lines on
    stderr, ``error: <message>`` and how to get the traceback, instead of the traceback; the exit status stays 1.
    The record in which MONAI's ``StatsHandler`` logs such an error, as it ends an engine's run, loses its traceback
    too. A Ctrl-C is said as :data:`INTERRUPTED` in both places, and the process still ends as interrupted (status
    130); SIGTERM stops the run as cleanly (:mod:`~unimiss_monai.utils.stop_signal`: status 143, its own line). Other
    errors go to the hook installed before, and keep their tracebacks. Installing twice changes nothing.

    ``UNIMISS_TRACEBACK=1`` (read when the error happens) prints the full traceback for every error.
    """
    import logging

    if not getattr(sys.excepthook, "unimiss_error_hook", False):
        sys.excepthook = _hook(sys.excepthook)
    if not getattr(logging.getLogRecordFactory(), "unimiss_error_hook", False):
        logging.setLogRecordFactory(_without_user_tracebacks(logging.getLogRecordFactory()))
    stop_signal.install(_close_progress_bars)
