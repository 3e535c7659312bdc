"""``python -m unimiss_monai.report.steps``, as ``tools/demo.sh`` launches every step, says nothing of its own import:
the report package does not load the module Python is about to run (a RuntimeWarning on every step before)."""

from __future__ import annotations

import subprocess
import sys


def test_a_step_launched_as_the_demo_does_prints_no_runtime_warning(tmp_path):
    out = tmp_path / "out.txt"
    write = f"open({str(out)!r}, 'w').write('x')"
    # -W error: the warning, had it come, fails the launch instead of scrolling past among the step's own output
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "unimiss_monai.report.steps",
                           str(tmp_path / "run"), "write", "--outputs", str(out), "--", sys.executable, "-c", write],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" not in proc.stderr and "found in sys.modules" not in proc.stderr, proc.stderr
    assert out.read_text() == "x"


def test_the_report_function_is_still_the_package_s_export():
    import unimiss_monai.report as package
    from unimiss_monai.report.command import report

    assert package.report is report and "report" in dir(package) and package.__all__ == ["report"]
