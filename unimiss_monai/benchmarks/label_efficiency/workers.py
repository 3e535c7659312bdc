"""Independent calls run in worker processes, each with its share of the threads: the ``--jobs`` of a study.

Only the main process decides what is kept: it gets each call's result as the call finishes. Ctrl-C, an error or a
kill of the main process ends every worker at once, so no run goes on training into a folder that a resumed study
is about to use; a worker that dies (killed for memory, a crash) ends its call, and the others are reported lost
rather than left hanging.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

__all__ = ["run_in_workers"]

# the thread pools of torch and of the BLAS libraries below it read these when they load in a worker
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _exit_with(parent: int) -> None:
    # a worker whose main process was killed (no Ctrl-C, no clean-up) must not train on, unseen
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _start_worker(threads: int, parent: int) -> None:
    # Ctrl-C belongs to the main process, which then ends the workers; a worker that caught it itself would end its
    # call half done and start the next one
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    import torch

    torch.set_num_threads(threads)


def _end(pool) -> None:
    """Stop ``pool`` now: queued calls cancelled, running ones killed."""
    from multiprocessing.connection import wait as wait_for

    # concurrent.futures lets running calls finish on shutdown and, before Python 3.14 (terminate_workers), offers no
    # public way to end them; its own table of worker processes is the one way to reach them
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        # the sentinel is ready once the process has exited; its exit code may read None when the pool's own thread
        # reaped it first, so the sentinel, not is_alive(), decides whether to kill
        if not wait_for([process.sentinel], 10):
            process.kill()


def run_in_workers(calls: Mapping[Hashable, tuple], fn: Callable[..., Any], jobs: int,
                   done: Callable[[Hashable, Any], None], lost: Callable[[Hashable, str], None]) -> None:
    """``fn(*calls[key])`` for every key, ``jobs`` at a time in spawned processes with
    ``torch.get_num_threads() // jobs`` threads each (at least 1).

    Args:
        calls: key -> arguments; ``fn`` and the arguments must pickle.
        fn: a module-level function. It should catch its own errors (an exception it raises stops every call).
        jobs: worker processes.
        done: ``done(key, result)`` in this process as each call finishes.
        lost: ``lost(key, reason)`` for each call that a worker's death took with it (the call that was running
            there and every call not finished yet: they cannot be told apart).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    import torch

    threads = max(1, torch.get_num_threads() // int(jobs))
    # spawn, not fork: a forked child of a process that has run OpenMP threads can hang in its first parallel op
    pool = ProcessPoolExecutor(int(jobs), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads, os.getpid()))
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    # the workers start while the calls are submitted, and inherit this environment and, until their own start-up
    # has run, this handling of Ctrl-C (which only the main process may act on)
    main_thread = threading.current_thread() is threading.main_thread()
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        os.environ.update({name: str(threads) for name in _THREAD_VARIABLES})
        try:
            pending = {pool.submit(fn, *args): key for key, args in calls.items()}
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if main_thread:
                signal.signal(signal.SIGINT, interrupt)
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool as err:
                    cause = f" ({err.__cause__})" if err.__cause__ else ""
                    lost(key, f"a worker process died while this run was running or waiting: {err}{cause}; killed "
                              "for memory, a crash, or a worker that could not start; run the study again to train it")
                    continue
                done(key, result)
    except BaseException:
        _end(pool)
        raise
    pool.shutdown(wait=True)
