"""tools/demo.sh end to end at smoke scale (synthetic samples, the one-minute overlays): every step runs, is recorded,
is skipped when run again, and the report has every section with real pictures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .html_checks import check_page

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def _demo(run: Path, samples: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEMO_SCALE": "smoke", "SAMPLES": str(samples), "SAMPLES_OPTS": "--synthetic",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(ROOT / "tools" / "demo.sh"), *extra, str(run)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)


def test_demo_smoke_writes_a_complete_report(tmp_path):
    run, samples = tmp_path / "run", tmp_path / "samples"
    done = _demo(run, samples)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"report: {run / 'report.html'}" in done.stdout and "report: no run output" not in done.stdout
    # every bundle step printed its exact command
    assert done.stdout.count("python -m monai.bundle run --config_file") == 14
    steps = json.loads((run / "demo_steps.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["ok"] * len(steps) and len(steps) == 16
    check_page((run / "report.html").read_text())
    assert (run / "report.md").is_file()
    # a second run reuses every valid output and rewrites only the report
    again = _demo(run, samples)
    assert again.returncode == 0, again.stderr[-3000:]
    status = {s["name"]: s["status"] for s in json.loads((run / "demo_steps.json").read_text())["steps"]}
    assert status.pop("report") == "ok" and set(status.values()) == {"skipped"}
