"""``tools/bench_gpu.sh``: without CUDA it exits 2 with one line and writes nothing; the merge of its parts keeps
every result as written and says why a step has none; ``--steps`` reruns some steps and keeps the others' results
(its bookkeeping checked with a stand-in for Python that reports CUDA and writes a result per benchmark)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    assert proc.returncode == 1, proc.stderr  # merged, and failed: two steps have no result
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


# Stands in for the interpreter: the CUDA check passes, the machine query writes a fake GPU, each benchmark writes
# {"step": <step name>} to its output (fails when named in FAIL_STEP, writes nothing when named in EMPTY_STEP), and
# the merge runs in the real Python.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-c" ] && [ $# -eq 2 ]; then exit 0; fi
if [ "$1" = "-" ]; then
    script="$(cat)"
    case "$script" in *get_device_name*) echo '{"gpu": "Fake GPU"}' > "$2"; exit 0 ;; esac
    exec "$REAL_PYTHON" -c "$script" "$2" "$3"
fi
if [ "$1" = "-c" ]; then out="$3"; else
    prev=""; for a in "$@"; do [ "$prev" = "--out" ] && out="$a"; prev="$a"; done
fi
name="$(basename "$out" .json)"
case " $FAIL_STEP " in *" $name "*) echo "$name broke" >&2; exit 1 ;; esac
case " $EMPTY_STEP " in *" $name "*) exit 0 ;; esac
echo "{\\"step\\": \\"$name\\"}" > "$out"
"""


def test_steps_rerun_some_and_keep_the_others(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out = tmp_path / "bench" / "gpu.json"
    env = {"PYTHON": str(fake), "REAL_PYTHON": sys.executable}
    proc = _run(str(out), FAIL_STEP="infer", **env)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one step failed: the run did not do its work
    merged = json.loads(out.read_text())
    assert merged["machine"] == {"gpu": "Fake GPU"}
    assert merged["ok"] == ["backbone_bf16", "backbone_fp32", "drr", "pretrain"] and merged["failed"] == ["infer"]
    assert merged["steps"]["pretrain"]["result"] == {"step": "pretrain"}
    assert "; from unimiss_monai.benchmarks.pretrain import bench_pretrain;" in merged["steps"]["pretrain"]["command"]
    # the failed step again, now working: the other four results stay as they were
    proc = _run("--steps", "infer", str(out), FAIL_STEP="", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[bench-gpu] drr:" not in proc.stdout and "[bench-gpu] infer:" in proc.stdout
    merged = json.loads(out.read_text())
    assert merged["ok"] == ["backbone_bf16", "backbone_fp32", "drr", "infer", "pretrain"] and merged["failed"] == []
    assert {n: s["result"]["step"] for n, s in merged["steps"].items()} == {n: n for n in merged["ok"]}
    # a step that fails when rerun does not keep its earlier result
    proc = _run("--steps", "drr", str(out), FAIL_STEP="drr", **env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    merged = json.loads(out.read_text())
    assert merged["failed"] == ["drr"] and "result" not in merged["steps"]["drr"], merged["steps"]["drr"]
    assert "drr broke" in merged["steps"]["drr"]["error"]
    # nor does one that exits 0 without writing a result
    proc = _run("--steps", "pretrain", str(out), EMPTY_STEP="pretrain", **env)
    merged = json.loads(out.read_text())
    assert merged["failed"] == ["drr", "pretrain"] and merged["steps"]["pretrain"]["error"].startswith("wrote no result")
    lines = (out.parent / "bench_gpu_parts" / "steps.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == ["backbone_bf16", "backbone_fp32", "drr", "infer", "pretrain"]
