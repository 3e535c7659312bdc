"""``tools/bench_gpu.sh``: without CUDA it exits 2 with one line and writes nothing; the merge of its parts keeps
every result as written and says why a step has none."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "bench_gpu.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_without_cuda_exits_2_in_one_line(tmp_path):
    out = tmp_path / "sub" / "bench_gpu.json"
    proc = _run(str(out), CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tools/bench_gpu.sh: no CUDA device available to torch"), proc.stderr
    assert not (tmp_path / "sub").exists()


def test_merge_keeps_results_and_names_failures(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    drr = {"setup": "CT cxr.nii.gz ...", "device": "cuda", "notes": [], "results": [{"renderer": "nanodrr", "median_s": 0.01}]}
    (parts / "drr.json").write_text(json.dumps(drr))
    (parts / "drr.log").write_text("fine\n")
    (parts / "backbone_bf16.log").write_text("line 1\nline 2\nKilled\n")
    (parts / "pretrain.log").write_text("RuntimeError: CUDA out of memory\n")
    (parts / "pretrain.json").write_text("{}")  # left over from an earlier run: a failed step must not report it
    (parts / "machine.json").write_text(json.dumps({"gpu": "Some GPU", "torch": "2.13.0"}))
    (parts / "steps.tsv").write_text(
        "drr\t0\t95\tpython -m unimiss_monai bench-drr --device cuda\n"
        "backbone_bf16\t124\t120\tpython -m unimiss_monai bench-backbone --amp bf16\n"
        "pretrain\t1\t12\tpython -c ...\n"
    )
    out = tmp_path / "merged.json"
    proc = _run("--merge", str(parts), str(out))
    assert proc.returncode == 0, proc.stderr
    assert "1 step(s) with results, 2 without (backbone_bf16, pretrain)" in proc.stdout
    merged = json.loads(out.read_text())
    assert merged["machine"] == {"gpu": "Some GPU", "torch": "2.13.0"}
    assert merged["ok"] == ["drr"] and merged["failed"] == ["backbone_bf16", "pretrain"]
    steps = merged["steps"]
    assert steps["drr"] == {"command": "python -m unimiss_monai bench-drr --device cuda", "exit_status": 0,
                            "wall_s": 95.0, "result": drr}
    assert steps["backbone_bf16"]["error"].startswith("ran out of time (exit status 124)")
    assert steps["backbone_bf16"]["error"].endswith("line 1 | line 2 | Killed")
    assert "result" not in steps["pretrain"] and "CUDA out of memory" in steps["pretrain"]["error"]


@pytest.mark.parametrize("args, message", [
    (["--merge", "/nonexistent/parts", "/tmp/never.json"], "steps.tsv does not exist"),
    (["--merge", "only-one"], "--merge takes PARTS OUT"),
    (["--fast"], "unknown option --fast"),
    (["--steps", "drr,render"], "unknown step render"),
    (["--steps"], "--steps takes a comma-separated list"),
    (["--steps", "drr", "--fast"], "unknown option --fast"),
])
def test_refusals(args, message):
    proc = _run(*args)
    assert proc.returncode != 0 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
