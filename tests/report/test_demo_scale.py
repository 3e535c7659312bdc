"""tools/demo.sh keeps each DEMO_SCALE in its own run folder: a smoke run's finished checkpoints would otherwise be
resumed by the demo-scale run (same network shapes), which would train only the epochs after them.

Cheap: the script runs from a copy of ``tools/`` whose set-up (``_env.sh``) is a stub that prints the chosen folder and
stops, so nothing is installed or trained."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB = 'echo "run folder: $RUN_DIR"; exit 0  # the set-up stops here: the folder is chosen before it\n'


@pytest.fixture
def tree(tmp_path) -> Path:
    """A repository-like folder holding tools/demo.sh and a stub set-up."""
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "demo.sh", tmp_path / "tools" / "demo.sh")
    (tmp_path / "tools" / "_env.sh").write_text(STUB)
    return tmp_path


def _demo(tree: Path, scale: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DEMO_SCALE"} | ({"DEMO_SCALE": scale} if scale else {})
    return subprocess.run(["bash", str(tree / "tools" / "demo.sh"), *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=60)


def test_each_scale_has_its_own_default_folder(tree):
    for scale, folder in ((None, "outputs/demo"), ("demo", "outputs/demo"), ("smoke", "outputs/demo-smoke")):
        done = _demo(tree, scale)
        assert done.returncode == 0 and done.stdout.strip() == f"run folder: {folder}", (scale, done.stdout, done.stderr)


def test_a_folder_of_another_scale_is_refused(tree):
    run = tree / "outputs" / "demo"
    run.mkdir(parents=True)
    (run / "demo_scale.txt").write_text("smoke\n")
    done = _demo(tree, None)
    assert done.returncode == 2 and "run folder" not in done.stdout
    assert done.stderr.startswith("tools/demo.sh: outputs/demo holds a DEMO_SCALE=smoke run and this one is "
                                  "DEMO_SCALE=demo") and done.stderr.count("\n") == 1, done.stderr
    assert "--fresh" in done.stderr
    assert (run / "demo_scale.txt").read_text() == "smoke\n"  # refused before anything is written
    assert _demo(tree, "smoke", str(run)).stdout.strip() == f"run folder: {run}"  # the same scale goes on
    assert _demo(tree, None, "--fresh").stdout.strip() == "run folder: outputs/demo"  # retrained in place


def test_a_folder_written_before_the_scale_file_is_read_from_its_steps(tree):
    run = tree / "run"
    run.mkdir()
    command = ["python", "-m", "monai.bundle", "run", "--config_file",
               "['bundles/unimiss_pretraining/configs/train.json','bundles/unimiss_pretraining/configs/smoke.yaml']"]
    (run / "demo_steps.json").write_text(json.dumps({"steps": [{"name": "pretraining", "command": command}]}))
    assert _demo(tree, "demo", str(run)).returncode == 2
    assert _demo(tree, "smoke", str(run)).returncode == 0


def test_a_relative_run_folder_typed_in_another_folder_is_that_folders(tree, tmp_path):
    """``cd X && bash repo/tools/demo.sh "my run"`` wrote ``repo/my run``: the steps run from the repository root. A
    relative run folder (and SAMPLES) typed elsewhere is now that folder's; typed at the root it stays as typed."""
    (tree / "tools" / "_env.sh").write_text('echo "run folder: $RUN_DIR"; echo "samples: ${SAMPLES:-}"; exit 0\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DEMO_SCALE"}
    done = subprocess.run(["bash", str(tree / "tools" / "demo.sh"), "my run"], cwd=elsewhere, capture_output=True,
                          text=True, timeout=60, env={**env, "SAMPLES": "my samples"})
    assert done.returncode == 0 and done.stdout.splitlines() == [
        f"run folder: {elsewhere}/my run", f"samples: {elsewhere}/my samples"], (done.stdout, done.stderr)
    at_root = subprocess.run(["bash", "tools/demo.sh", "my run"], cwd=tree, capture_output=True, text=True,
                             timeout=60, env={**env, "SAMPLES": "my samples"})
    assert at_root.stdout.splitlines() == ["run folder: my run", "samples: my samples"], at_root.stderr


def test_a_step_keeps_each_output_and_input_path_whole_when_it_has_spaces(tmp_path):
    """The step lists were split on spaces: a run folder such as "My Projects/run" gave outputs "My" and
    "Projects/run/...", which never exist, so no step was ever skipped. They are tab-separated now."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").write_text('#!/usr/bin/env bash\nfor a in "$@"; do echo "[$a]"; done\n')
    (shim / "python").chmod(0o755)
    script = (
        'RUN_DIR="/data/My Projects/run"; FRESH=""; SAMPLES="/data/My Projects/samples"\n'
        f'eval "$(sed -n "/^T=/p;/^step() {{/,/^}}/p;/^cfg_files() {{/,/^}}/p" {ROOT / "tools" / "demo.sh"})"\n'
        'step pretraining pretraining "$RUN_DIR/model.pt$T$RUN_DIR/loss curves.json" '
        '"$SAMPLES/samples.json$T$(cfg_files unimiss_pretraining train.json smoke.yaml)" -- echo done\n')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"})
    args = [line[1:-1] for line in done.stdout.splitlines()]
    outputs, inputs = args.index("--outputs"), args.index("--inputs")
    assert args[outputs + 1:inputs] == ["/data/My Projects/run/model.pt", "/data/My Projects/run/loss curves.json"]
    assert args[inputs + 1:args.index("--")] == ["/data/My Projects/samples/samples.json",
                                                 "bundles/unimiss_pretraining/configs/train.json",
                                                 "bundles/unimiss_pretraining/configs/smoke.yaml"], done.stderr
