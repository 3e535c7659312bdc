"""The warnings of a computation are collected from its own thread only, still reach stderr where logging was never
configured, and are said again once per message in a process, not at all where the computation said them live."""

from __future__ import annotations

import logging
import threading

import pytest

from unimiss_monai.utils import once
from unimiss_monai.utils.logged_warnings import note, say_again, warnings_logged

LOGGER = "unimiss_monai.some_module"


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch):
    monkeypatch.setattr(once, "_SAID", {})


def test_each_thread_collects_the_records_of_its_own_computation_only():
    both_inside, collected = threading.Barrier(2), {}

    def compute(name: str) -> None:
        with warnings_logged() as said:
            both_inside.wait()  # both collect at once
            logging.getLogger(LOGGER).warning("%s: a warning", name)
            logging.getLogger(LOGGER).info("%s: not a warning", name)
            logging.getLogger("elsewhere").warning("%s: another package's", name)
            both_inside.wait()
        collected[name] = said

    threads = [threading.Thread(target=compute, args=(n,)) for n in ("a.png", "b.png")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert collected == {n: [[LOGGER, logging.WARNING, f"{n}: a warning"]] for n in ("a.png", "b.png")}


def test_said_again_once_per_process_and_not_after_being_said_live(caplog):
    with caplog.at_level(logging.WARNING):
        with warnings_logged() as said:
            logging.getLogger(LOGGER).warning("live.png: a warning")
        say_again(said)  # read back later in the run that computed it
        stored = [[LOGGER, logging.ERROR, "stored.png: 100% an error"]]
        for _ in range(3):
            say_again(stored)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (LOGGER, logging.WARNING, "live.png: a warning"), (LOGGER, logging.ERROR, "stored.png: 100% an error")]


def test_a_warning_still_reaches_stderr_where_logging_was_never_configured(monkeypatch, capsys):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # pytest's own handlers off: a plain script
    with warnings_logged() as said:
        logging.getLogger(LOGGER).warning("plain.png: a warning")
    assert said and capsys.readouterr().err.count("plain.png: a warning") == 1


def test_a_noted_warning_is_kept_with_the_computation_and_not_logged(caplog):
    # what a once-per-file guard suppresses: said before in this process, still part of the result computed now
    log = logging.getLogger(LOGGER)
    with caplog.at_level(logging.WARNING):
        note(log, logging.WARNING, "%s: a warning said before", "again.png")  # no computation: nothing kept
        with warnings_logged() as said:
            note(log, logging.WARNING, "%s: a warning said before", "again.png")
            note(logging.getLogger("elsewhere"), logging.WARNING, "another package's")
            note(log, logging.INFO, "not a warning")
    assert said == [[LOGGER, logging.WARNING, "again.png: a warning said before"]] and caplog.records == []
