"""The demo's time end to end: each step's wrapper time (start-up, checks) recorded beside its command's, and the
report's table, sentence and timing figure that add them up."""

from __future__ import annotations

import json
import sys
import time

import matplotlib.axes
import pytest

from unimiss_monai.report.document import Figure, Paragraph, Table
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.run_steps import run_section
from unimiss_monai.report.steps import STEP_CALLED, STEPS_FILE, called_at, read_steps, run_step


def test_the_wrapper_time_is_recorded_from_when_it_was_called(tmp_path, monkeypatch):
    run, out = tmp_path / "run", tmp_path / "out.txt"
    command = [sys.executable, "-c", f"import os; open({str(out)!r}, 'w').write(os.environ.get({STEP_CALLED!r}, '-'))"]
    monkeypatch.setenv(STEP_CALLED, str(time.time() - 2.0))
    # started 2 s ago by its caller: the interpreter's start-up counts, the command's own time does not
    t0 = time.perf_counter()
    assert run_step(run, "make", command, outputs=[str(out)], called=called_at()) == 0
    outer = time.perf_counter() - t0
    record = read_steps(run)["steps"][0]
    assert 1.95 <= record["check_seconds"] <= 2.0 + outer - record["wall_seconds"] + 0.1, (record, outer)
    assert out.read_text() == "-"  # the command (and a wrapper it starts) is not told this one's start
    # skipped: this invocation's check, the command's time from the run that made the output
    assert run_step(run, "make", command, outputs=[str(out)], called=time.time() - 3.0) == 0
    skipped = read_steps(run)["steps"][0]
    assert skipped["status"] == "skipped" and 2.95 <= skipped["check_seconds"] < 3.5
    assert skipped["wall_seconds"] == record["wall_seconds"]
    assert skipped["reused_check_seconds"] == record["check_seconds"]  # kept with the times of the run it reuses


def test_called_at_reads_bash_times():
    now = time.time()
    assert called_at({STEP_CALLED: f"{now - 1:.6f}".replace(".", ",")}) == pytest.approx(now - 1)  # a comma locale
    assert called_at({STEP_CALLED: str(int(now))}) == int(now)  # date +%s
    assert called_at({}) is None and called_at({STEP_CALLED: "soon"}) is None
    assert called_at({STEP_CALLED: str(now - 86400)}) is None  # from another day: not this call's


def _write(run, steps):
    run.mkdir(parents=True, exist_ok=True)
    (run / STEPS_FILE).write_text(json.dumps({"steps": steps, "environment": {"cpu_count": 2}}))


STEPS = [{"name": "samples", "status": "skipped", "wall_seconds": 50.0, "check_seconds": 9.0,
          "reused_check_seconds": 41.0},
         {"name": "pretraining", "status": "ok", "wall_seconds": 300.0, "check_seconds": 12.0},
         {"name": "report", "status": "ok", "wall_seconds": 20.0, "check_seconds": 9.0}]


def test_the_report_gives_the_time_end_to_end_beside_the_steps(tmp_path, monkeypatch):
    bars = []
    barh = matplotlib.axes.Axes.barh

    def record(self, y, width, *args, **kwargs):
        bars.append((list(width), kwargs.get("left")))
        return barh(self, y, width, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "barh", record)
    _write(tmp_path, STEPS)
    section = run_section(RunFolder(tmp_path))
    text = " ".join(b.text for b in section.blocks if isinstance(b, Paragraph))
    # commands that ran: 320 s; end to end: those and every step's wrapper, the skipped one's too (350 s)
    assert "5.3 min of wall time in their commands" in text and "5.8 min end to end" in text
    table = next(b for b in section.blocks if isinstance(b, Table) and "end to end (s)" in b.header)
    total = dict(zip(table.header, table.rows[-1]))
    assert total["step"] == "all steps" and total["wall (s)"] == "320.0" and total["end to end (s)"] == "350.0"
    assert dict(zip(table.header, table.rows[0]))["end to end (s)"] == "9.0"  # skipped: only its check ran
    # the figure: the commands' bars and, after each, the wrapper's segment; its caption says so
    assert bars == [([50.0, 300.0, 20.0], None), ([9.0, 12.0, 9.0], [50.0, 300.0, 20.0])]
    (figure,) = [b for b in section.blocks if isinstance(b, Figure)]
    assert "step wrapper's own" in figure.caption


def test_steps_recorded_before_the_wrapper_time_are_still_read(tmp_path):
    _write(tmp_path, [{k: v for k, v in s.items() if k != "check_seconds"} for s in STEPS])
    section = run_section(RunFolder(tmp_path))
    text = " ".join(b.text for b in section.blocks if isinstance(b, Paragraph))
    assert "5.3 min of wall time" in text and "the time end to end is unknown" in text
    table = next(b for b in section.blocks if isinstance(b, Table) and "end to end (s)" in b.header)
    assert table.rows[-1][:5] == ["all steps", "", "320.0", "-", "-"]
    (figure,) = [b for b in section.blocks if isinstance(b, Figure)]
    assert "wrapper" not in figure.caption  # nothing of it drawn


def test_the_summary_gives_the_chain_end_to_end_beside_its_steps(tmp_path):
    from unimiss_monai.report.sections.summary import summary_section

    def chain_row():
        table = next(b for b in summary_section(RunFolder(tmp_path)).blocks if isinstance(b, Table))
        return next(row for row in table.rows if row[0] == "whole chain")

    _write(tmp_path, STEPS)
    # every step's command as recorded (370 s), and the wrappers' of the runs that made the outputs (62 s; not this
    # invocation's 9 s check of the skipped step)
    row = chain_row()
    assert "end to end, with the step wrapper's start-up and checks" in row[1] and row[2] == "6.2 min; 7.2 min"
    _write(tmp_path, [{k: v for k, v in s.items() if k != "check_seconds"} for s in STEPS])
    assert chain_row()[1:3] == ["wall time of all steps (reused ones as measured when they ran)", "6.2 min"]
