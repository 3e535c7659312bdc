"""SIGTERM as a clean stop: what a job scheduler (Slurm's time limit or preemption, Kubernetes' eviction) or ``kill``
sends. Python's default ends the process at once, with no message and with no ``finally`` run, so a partly written
file's temporary stays, a DRR case being written is left half done and the log ends mid-line. :func:`install` turns
the signal into :class:`Terminated`, which unwinds like Ctrl-C (each ``with`` and ``finally`` runs, an engine's
exception handlers log it) and ends the process with the status the signal itself gives (143), after one line that
says how to go on. A SIGTERM repeated within :data:`REPEAT_S` (under ``srun torchrun`` both Slurm and the launcher
send one) lets the clean-up finish; a later one, or ``kill -9``, ends the process at once.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time

__all__ = ["REPEAT_S", "TERMINATED", "Terminated", "install"]

#: the last line of a process stopped by SIGTERM: what was written stays (each file is written whole), and the same
#: command goes on
TERMINATED = ("stopped by SIGTERM (a scheduler's time limit or preemption, or kill); run the same command again to go "
              "on: training resumes from its last checkpoint, DRR generation skips the CTs done")
# pid: the process that installed the handler (None: not installed); stopped: when the first SIGTERM came (monotonic s)
_STATE = {"stopped": None, "pid": None}
#: seconds after the first SIGTERM in which another is taken for the same stop, not for a harder one
REPEAT_S = 10.0


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives. A ``SystemExit``, so that no ``except Exception`` takes it for
    a case's failure and carries on, and the process ends with its code, 143 (128 + SIGTERM) as if killed."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)

    def __str__(self) -> str:  # what ignite logs as the reason the run ended, where the code alone says "143"
        return "stopped by SIGTERM"


def _on_sigterm(signum, frame) -> None:
    stopped = _STATE["stopped"]
    # a process forked from this one (a DataLoader worker) inherited the handler, and a run still here long after
    # its stop (the first one swallowed where no error can pass, a __del__ say) is asked again: both end as SIGTERM
    # ends a process without this handler
    if os.getpid() != _STATE["pid"] or (stopped is not None and time.monotonic() - stopped >= REPEAT_S):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    elif stopped is None:
        _STATE["stopped"] = time.monotonic()
        raise Terminated()
    # else said again while the first unwinds: under srun torchrun both Slurm and the launcher send one


def _say_stopped(close_progress_bars) -> None:
    if _STATE["stopped"] is not None and os.getpid() == _STATE["pid"]:
        close_progress_bars()
        sys.stderr.write(f"{TERMINATED}\n")
        sys.stderr.flush()


def install(close_progress_bars=lambda: None) -> bool:
    """Raise :class:`Terminated` on SIGTERM in this process's main thread, and print :data:`TERMINATED` at exit after
    one. Only where SIGTERM still has its default action: a handler installed by someone else (a server, a launcher)
    is kept. Installing twice changes nothing.

    Args:
        close_progress_bars: called before the line is printed, so that no bar redraws after it.

    Returns:
        whether the handler is in place.
    """
    if _STATE["pid"] is not None:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False  # only the main thread may set a handler, and Python runs it there only
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    _STATE["pid"] = os.getpid()
    signal.signal(signal.SIGTERM, _on_sigterm)
    # registered once, early: atexit runs the latest first, so the line comes after every later clean-up's output
    atexit.register(_say_stopped, close_progress_bars)
    return True
