"""SIGTERM, as a scheduler (Slurm, Kubernetes) or ``kill`` sends it, stops a run cleanly: ``finally`` blocks run, the
engine's record and the last line say how to go on, and the process ends with status 143 as if killed by it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import unimiss_monai
from unimiss_monai.utils import install_error_hook
from unimiss_monai.utils.stop_signal import TERMINATED, Terminated

# a run that is busy (in a sleep: a long C call or a wait alike) when the signal comes, with clean-up to do
RUN = '''
import sys, time
from pathlib import Path
{setup}
from unimiss_monai.utils import install_error_hook
install_error_hook()
marks = Path(sys.argv[1])
try:
    (marks / "started").write_text("")
    time.sleep(120)
    (marks / "finished").write_text("")
finally:
    (marks / "cleaning").write_text("")
    time.sleep({clean_up})
    (marks / "cleaned").write_text("")
'''


def _stopped(tmp_path: Path, signals: int = 1, setup: str = "",
             clean_up: float = 0) -> tuple[subprocess.CompletedProcess, set]:
    """Runs :data:`RUN`, sends SIGTERM once it has started (and ``signals - 1`` more once it is cleaning up); returns
    the finished process and the marks it left."""
    env = {**{k: v for k, v in os.environ.items() if k != "UNIMISS_TRACEBACK"},
           "PYTHONPATH": str(Path(unimiss_monai.__file__).parents[1])}
    code = RUN.format(setup=setup, clean_up=clean_up)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for sent, mark in enumerate(["started", "cleaning"][:signals]):
        deadline = time.monotonic() + 60
        while not (tmp_path / mark).exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), {p.name for p in tmp_path.iterdir()}


def test_sigterm_unwinds_says_how_to_go_on_and_ends_as_killed_by_it(tmp_path):
    proc, marks = _stopped(tmp_path)
    assert proc.returncode == 128 + signal.SIGTERM
    assert proc.stderr.splitlines() == [TERMINATED]  # one line, no traceback
    assert marks == {"started", "cleaning", "cleaned"}  # the clean-up ran; the work did not go on


def test_a_sigterm_repeated_while_cleaning_up_lets_the_clean_up_finish(tmp_path):
    """Under ``srun torchrun`` Slurm and the launcher each send one: the second cut the clean-up short (exit -15, no
    line)."""
    proc, marks = _stopped(tmp_path, signals=2, clean_up=1.5)
    assert proc.returncode == 128 + signal.SIGTERM and proc.stderr.splitlines() == [TERMINATED]
    assert "cleaned" in marks


def test_a_sigterm_long_after_the_first_ends_the_process_at_once(tmp_path):
    """A run still there after its stop (the first one swallowed where no error passes, a __del__): a later SIGTERM
    ends it as it would without the handler. Here every repeat counts as later."""
    setup = "import unimiss_monai.utils.stop_signal as stop; stop.REPEAT_S = 0.0"
    proc, marks = _stopped(tmp_path, signals=2, setup=setup, clean_up=60)
    assert proc.returncode == -signal.SIGTERM and "cleaned" not in marks


def test_a_process_forked_after_the_install_ends_as_sigterm_ends_it(tmp_path):
    """A DataLoader worker is forked with the handler: it is no run of its own to unwind and say so."""
    code = (
        "import os, signal, sys, time\n"
        "from unimiss_monai.utils import install_error_hook\n"
        "install_error_hook()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
        "os.kill(child, signal.SIGTERM)\n"
        "_, status = os.waitpid(child, 0)\n"
        "print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(unimiss_monai.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "True" and TERMINATED not in proc.stderr, proc.stderr


def test_a_handler_installed_before_is_kept(tmp_path):
    # a server or launcher that handles SIGTERM itself keeps doing so
    setup = "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))"
    proc, marks = _stopped(tmp_path, setup=setup)
    assert proc.returncode == 7 and TERMINATED not in proc.stderr and "cleaned" in marks


def test_the_engine_records_the_stop_without_traceback(monkeypatch):
    from ignite.engine import Engine
    from monai.handlers import StatsHandler

    monkeypatch.delenv("UNIMISS_TRACEBACK", raising=False)
    install_error_hook()
    logger, records = logging.getLogger("test_stop_signal"), []
    monkeypatch.setattr(logger, "handle", records.append)

    def step(engine, batch):
        raise Terminated()

    engine = Engine(step)
    StatsHandler(iteration_log=False, epoch_log=False, name=logger.name).attach(engine)
    with pytest.raises(Terminated) as stop:
        engine.run([0])
    assert stop.value.code == 128 + signal.SIGTERM
    logged = next(r for r in reversed(records) if r.funcName == "exception_raised")
    assert logged.exc_info is None and logged.getMessage() == TERMINATED
