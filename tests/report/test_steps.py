"""The demo's step runner: runs, records, skips what is up to date, reruns what is not."""

from __future__ import annotations

import json
import os
import sys
import time

from unimiss_monai.report.run_folder import inference_cases
from unimiss_monai.report.steps import STEPS_FILE, main, outputs_valid, read_steps, run_step


SLEEP = 0.3  # seconds the writer sleeps: a lower bound of its recorded wall time


def _writer(path):
    return [sys.executable, "-c", f"import time; time.sleep({SLEEP}); open({str(path)!r}, 'a').write('x')"]


def test_run_then_skip_then_rerun(tmp_path, capsys):
    run, out, src = tmp_path / "run", tmp_path / "out.txt", tmp_path / "in.txt"
    src.write_text("input")
    os.utime(src, (time.time() - 10, time.time() - 10))
    before, t0 = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    assert run_step(run, "make", _writer(out), outputs=[str(out)], inputs=[str(src)]) == 0
    outer, after = time.perf_counter() - t0, time.strftime("%Y-%m-%dT%H:%M:%S")
    assert out.read_text() == "x"
    record = read_steps(run)["steps"][0]
    assert record["status"] == "ok" and record["returncode"] == 0
    # the command's own duration: at least its sleep, at most the whole call (both give-or-take the 0.1 s rounding)
    assert SLEEP - 0.05 <= record["wall_seconds"] <= outer + 0.05, (record["wall_seconds"], outer)
    assert before <= record["started"] <= after
    assert record["command"].startswith(sys.executable) and "environment" in json.loads((run / STEPS_FILE).read_text())
    printed = capsys.readouterr().out
    assert record["command"] in printed  # the exact command, to copy
    # up to date: skipped, the output untouched, the earlier timing kept
    assert run_step(run, "make", _writer(out), outputs=[str(out)], inputs=[str(src)]) == 0
    assert out.read_text() == "x"
    again = read_steps(run)["steps"][0]
    assert again["status"] == "skipped" and again["wall_seconds"] == record["wall_seconds"]
    # a newer input, a changed command or --fresh run it again
    os.utime(src, (time.time() + 5, time.time() + 5))
    run_step(run, "make", _writer(out), outputs=[str(out)], inputs=[str(src)])
    assert out.read_text() == "xx"
    run_step(run, "make", _writer(out), outputs=[str(out)], fresh=True)
    assert out.read_text() == "xxx"


def test_failure_is_recorded_and_never_skipped(tmp_path):
    run, out = tmp_path / "run", tmp_path / "out.txt"
    out.write_text("left by a killed run")
    assert main([str(run), "bad", "--outputs", str(out), "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert read_steps(run)["steps"][0]["status"] == "failed" and read_steps(run)["steps"][0]["returncode"] == 3
    # the output exists, but the last run failed: run it again
    assert run_step(run, "bad", [sys.executable, "-c", "pass"], outputs=[str(out)]) == 0
    assert read_steps(run)["steps"][0]["status"] == "ok"
    assert out.read_text() == "left by a killed run"


def test_outputs_valid_reasons(tmp_path):
    a = tmp_path / "a"
    assert outputs_valid([a]) == (False, f"missing {a}")
    a.write_text("")
    assert outputs_valid([a])[0]
    assert not outputs_valid([])[0]


def test_inference_summaries_old_and_new(tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    (new / "summary.json").write_text(json.dumps({"cases": [
        {"case": "/d/a.nii.gz", "status": "ok", "reason": "", "output": "/o/a_seg.nii.gz"},
        {"case": "/d/b.nii.gz", "status": "failed", "reason": "bad"}]}))
    cases = inference_cases(new)
    # an output is looked for in the folder of its summary, never where the run that wrote it stood
    assert [(c["status"], c["input"], c["output"]) for c in cases] == [
        ("ok", "/d/a.nii.gz", str(new / "a_seg.nii.gz")), ("failed", "/d/b.nii.gz", None)]
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps({"classes": ["liver"], "written": [
        {"case": "ct", "output": "/o/ct_seg.nii.gz", "shape": [4, 4, 4]}], "failed": []}))
    assert [(c["case"], c["status"], c["output"]) for c in inference_cases(old)] == [("ct", "ok", str(old / "ct_seg.nii.gz"))]
    assert inference_cases(tmp_path / "none") == []


def test_inference_outputs_are_found_in_the_summarys_folder_wherever_the_run_wrote_them(tmp_path):
    # written with a relative --output_dir from another directory, or into a folder that was copied since: the file
    # at the recorded place is another run's (or nothing), the one in the folder is this run's
    copy = tmp_path / "copy" / "inference"
    (copy / "maps").mkdir(parents=True)
    (copy / "maps" / "a_seg.nii.gz").write_text("this run")
    (tmp_path / "elsewhere" / "inference").mkdir(parents=True)
    stale = tmp_path / "elsewhere" / "inference" / "b_seg.nii.gz"
    stale.write_text("another run")
    (copy / "summary.json").write_text(json.dumps({"cases": [
        {"case": "a.nii.gz", "status": "ok", "reason": "", "output": "relrun/inference/maps/a_seg.nii.gz"},
        {"case": "b.nii.gz", "status": "ok", "reason": "", "output": str(stale)},
        {"case": "c.nii.gz", "status": "ok", "reason": "", "output": "../../elsewhere/inference/b_seg.nii.gz"}]}))
    cases = inference_cases(copy)
    # b was deleted in the copy, and c's recorded path leads out of it to the other run's file: both missing here
    assert [c["output"] for c in cases] == [str(copy / "maps" / "a_seg.nii.gz"), str(copy / "b_seg.nii.gz"),
                                            str(copy / "b_seg.nii.gz")]


def test_printed_commands_paste_back_into_a_shell():
    import shlex

    from unimiss_monai.report.steps import quote_command

    argv = ["python", "-m", "monai.bundle", "run", "--config_file", "['a b.json','c.yaml']", "--x", "it's $HOME", "p"]
    line = quote_command(argv)
    assert shlex.split(line) == argv
    assert "--config_file \"['a b.json','c.yaml']\"" in line  # as the bundles' docs write it


def test_the_report_step_lists_itself_as_running_not_with_its_previous_times(tmp_path):
    """The demo's report step writes the page that lists the steps: its row is the run now going on, not the record
    its previous run left (whose time would be counted in this invocation)."""
    from .synthetic_run import make_run

    run, samples = make_run(tmp_path)
    command = [sys.executable, "-m", "unimiss_monai.report", str(run), "--samples", str(samples)]
    assert run_step(run, "report", [sys.executable, "-c", "pass"], stage="report") == 0
    steps = read_steps(run)
    steps["steps"][-1]["wall_seconds"] = 987.6  # the previous report step's time, recognisable
    (run / STEPS_FILE).write_text(json.dumps(steps))
    assert run_step(run, "report", command, outputs=[str(run / "report.md")], stage="report") == 0
    rows = [line for line in (run / "report.md").read_text().splitlines() if line.startswith("| report |")]
    assert len(rows) == 1 and "running (this page)" in rows[0] and "987.6" not in rows[0], rows
    assert "987.6" not in (run / "report.md").read_text()  # nor in the invocation's total
    assert read_steps(run)["steps"][-1]["wall_seconds"] != 987.6  # the record, afterwards, is this run's
    # a report of another folder made inside that step is no step of its own: the other folder's record stands
    other, _ = make_run(tmp_path / "other")
    assert run_step(other, "report", [sys.executable, "-c", "pass"], stage="report") == 0
    inside = [sys.executable, "-m", "unimiss_monai.report", str(other), "--samples", str(samples)]
    assert run_step(run, "report", inside, stage="report") == 0
    assert "running (this page)" not in (other / "report.md").read_text()
