"""The label-efficiency study with ``--jobs``: runs in worker processes write the same results as one process, and a
killed, interrupted or dead worker fails only its unfinished runs, which a rerun trains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from label_efficiency_fakes import DESIGN, META, SETTINGS, FakeRunner, study_json

from unimiss_monai.benchmarks.label_efficiency.command import write_results
from unimiss_monai.benchmarks.label_efficiency.design import StudyDesign
from unimiss_monai.benchmarks.label_efficiency.study import build_results, run_study

# whether a process still runs is read from /proc (a zombie has ended)
needs_proc = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads process states from /proc")


class PidRunner(FakeRunner):
    """:class:`FakeRunner` that notes which process ran each run and waits until two processes have started a run, so
    a study whose runs do not overlap in time fails the test instead of passing by luck; ``die`` kills its process."""

    def __init__(self, die: str | None = None, **kw):
        super().__init__(**kw)
        self.die = die

    def __call__(self, spec, run_dir: Path) -> dict:
        if spec.run_id == self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        (run_dir / "pid").write_text(str(os.getpid()))
        deadline = time.monotonic() + 10
        while len({f.read_text() for f in run_dir.parent.glob("*/pid")}) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().__call__(spec, run_dir)


def _fresh(progress: list) -> list[str]:
    return [r["run_id"] for r in progress if not r.get("reused")]


def test_two_jobs_train_in_two_worker_processes_and_write_the_same_json(tmp_path):
    whole = study_json(tmp_path / "a", FakeRunner())
    records = run_study(DESIGN.runs(32), PidRunner(), tmp_path / "b", SETTINGS, jobs=2)
    write_results(build_results(records, DESIGN, META), tmp_path / "b")
    assert (tmp_path / "b" / "label_efficiency.json").read_bytes() == whole
    pids = {p.read_text() for p in (tmp_path / "b" / "runs").glob("*/pid")}
    assert len(pids) == 2 and str(os.getpid()) not in pids
    # the records were written as runs finished: reading back trains nothing; a lost record trains that run only
    seen: list = []
    assert run_study(DESIGN.runs(32), PidRunner(), tmp_path / "b", SETTINGS, seen.append, jobs=2) == records
    assert _fresh(seen) == []
    (tmp_path / "b" / "runs" / "pretrained_f1_s3" / "record.json").unlink()
    seen.clear()
    again = run_study(DESIGN.runs(32), FakeRunner(), tmp_path / "b", SETTINGS, seen.append, jobs=2)
    assert _fresh(seen) == ["pretrained_f1_s3"] and [r["score"] for r in again] == [r["score"] for r in records]
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        run_study(DESIGN.runs(32), FakeRunner(), tmp_path / "c", SETTINGS, jobs=0)


def test_two_jobs_copy_and_fail_shared_trainings_as_one_job_does(tmp_path):
    design = StudyDesign((0.05, 0.1, 1.0), (0, 1), ("scratch", "pretrained"))
    one = run_study(design.runs(3), FakeRunner(fail="scratch_f0.05_s1"), tmp_path / "a", SETTINGS)
    two = run_study(design.runs(3), FakeRunner(fail="scratch_f0.05_s1"), tmp_path / "b", SETTINGS, jobs=2)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in two] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in one]


class InterruptingRunner(FakeRunner):
    """Notes its worker's pid in ``folder``, then raises ``KeyboardInterrupt`` inside the run."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def __call__(self, spec, run_dir: Path) -> dict:
        (self.folder / str(os.getpid())).write_text("")
        raise KeyboardInterrupt


@needs_proc
def test_an_interrupt_raised_in_a_worker_stops_the_study_and_its_workers(tmp_path):
    (tmp_path / "pids").mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_study(DESIGN.runs(32), InterruptingRunner(tmp_path / "pids"), tmp_path / "study", SETTINGS, jobs=2)
    assert not list(tmp_path.glob("study/runs/*/record.json"))
    workers = [int(f.name) for f in (tmp_path / "pids").iterdir()]
    assert workers
    # a terminated worker closes its end of the pipe a moment before the kernel has finished its exit
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)


def test_a_dead_worker_fails_the_unfinished_runs_and_a_rerun_trains_them(tmp_path):
    records = run_study(DESIGN.runs(32), PidRunner(die="scratch_f1_s2"), tmp_path, SETTINGS, jobs=2)
    died = {r["run_id"] for r in records if r["status"] == "failed"}
    assert "scratch_f1_s2" in died and all("worker process died" in r["error"] for r in records if r["run_id"] in died)
    seen: list = []
    again = run_study(DESIGN.runs(32), FakeRunner(), tmp_path, SETTINGS, seen.append, jobs=2)
    assert sorted(_fresh(seen)) == sorted(died) and all(r["status"] == "ok" for r in again)


def _sleep_in_worker(folder: str) -> None:
    (Path(folder) / "pids" / str(os.getpid())).write_text("")
    time.sleep(120)


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


@needs_proc
@pytest.mark.parametrize("how", ["sigkill_main", "ctrl_c"])
def test_workers_end_with_a_killed_or_interrupted_study(tmp_path, how):
    # Python's own Ctrl-C handler, as in a terminal: a test run started in the background inherits Ctrl-C ignored
    script = (f"import signal, sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from unimiss_monai.benchmarks.label_efficiency.workers import run_in_workers\n"
              "from test_label_efficiency_workers import _sleep_in_worker\n"
              "if __name__ == '__main__':\n"
              f"    run_in_workers({{0: ({str(tmp_path)!r},), 1: ({str(tmp_path)!r},)}}, _sleep_in_worker, 2, print, print)\n")
    (tmp_path / "study.py").write_text(script)
    pids = tmp_path / "pids"
    pids.mkdir()
    # its own session: Ctrl-C goes to the study's process group, as from a terminal, and not to pytest
    main = subprocess.Popen([sys.executable, str(tmp_path / "study.py")], start_new_session=True,
                            stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(f.name) for f in pids.iterdir()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        if how == "ctrl_c":
            os.killpg(main.pid, signal.SIGINT)
        else:
            main.kill()
        assert main.wait(30) != 0
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        for pid in [main.pid, *workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        main.wait()


def test_runs_waiting_on_a_failed_training_fail_with_it_and_are_retried(tmp_path):
    design = StudyDesign((0.05, 0.1, 1.0), (0, 1), ("scratch", "pretrained"))
    runs = design.runs(3)  # 0.05 and 0.1 are the same one-item training for a seed and arm
    records = {r["run_id"]: r for r in run_study(runs, FakeRunner(fail="scratch_f0.05_s1"), tmp_path, SETTINGS)}
    copy = records["scratch_f0.1_s1"]
    assert copy["status"] == "failed" and "same_run_as" not in copy
    assert copy["error"] == "the same training as scratch_f0.05_s1, which failed: RuntimeError: out of memory"
    retry = FakeRunner()
    again = {r["run_id"]: r for r in run_study(runs, retry, tmp_path, SETTINGS)}
    assert retry.calls == ["scratch_f0.05_s1"]
    assert again["scratch_f0.1_s1"]["same_run_as"] == "scratch_f0.05_s1"
    assert again["scratch_f0.1_s1"]["score"] == again["scratch_f0.05_s1"]["score"]
