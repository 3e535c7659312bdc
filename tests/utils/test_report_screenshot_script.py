"""``tools/report_screenshot.sh`` with a stand-in for Chromium: it succeeds only on a screenshot Chromium wrote in
this run; a picture left from an earlier run never stands for it, and a Chromium that fails says so in one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "report_screenshot.sh"

# writes a small file to --screenshot=PATH, unless CHROMIUM_MODE says to write nothing or to fail
FAKE_CHROMIUM = """#!/usr/bin/env bash
for a in "$@"; do case "$a" in --screenshot=*) out="${a#--screenshot=}" ;; esac; done
case "$CHROMIUM_MODE" in
    nothing) exit 0 ;;
    fail) echo "chromium: crashed" >&2; exit 3 ;;
esac
printf 'new picture' > "$out"
"""


def _run(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path]:
    fake = tmp_path / "chromium"
    fake.write_text(FAKE_CHROMIUM)
    fake.chmod(0o755)
    html = tmp_path / "report.html"
    html.write_text("<html></html>")
    env = {**os.environ, "CHROMIUM": str(fake), "CHROMIUM_MODE": mode}
    proc = subprocess.run(["bash", str(SCRIPT), str(html)], capture_output=True, text=True, timeout=60, env=env)
    return proc, tmp_path / "report.png"


def test_a_new_screenshot_replaces_the_old_one(tmp_path):
    (tmp_path / "report.png").write_bytes(b"old picture")
    proc, png = _run(tmp_path, "write")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(png) and png.read_bytes() == b"new picture"


def test_an_old_screenshot_does_not_stand_for_a_run_that_wrote_none(tmp_path):
    (tmp_path / "report.png").write_bytes(b"old picture")
    proc, png = _run(tmp_path, "nothing")
    assert proc.returncode != 0 and "wrote no screenshot" in proc.stderr, (proc.stdout, proc.stderr)
    assert png.read_bytes() == b"old picture"  # left as it was, not reported as this run's


def test_a_failing_chromium_is_reported(tmp_path):
    proc, png = _run(tmp_path, "fail")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "chromium failed" in lines[0] and "exit status 3" in lines[0], proc.stderr
    assert not png.exists()
