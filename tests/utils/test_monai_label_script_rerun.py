"""``tools/monai_label.sh`` prepares its folder, then checks a server; a check that fails (the server does not
start, a request fails) leaves a folder the next run rebuilds, while a label or weights saved after it was
prepared still stop the rerun. MONAI Label is a stand-in here (``UNIMISS_LABEL_VENV``) whose server exits at once,
so only the preparation and its bookkeeping run; the project venv is this one, behind a wrapper."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "monai_label.sh"
BUNDLE = "unimiss_cxr_segmentation"

# MONAI Label's python: its imports are "there", and its server exits during start-up
FAKE_LABEL_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-m" ] && [ "$2" = "monailabel.main" ]; then echo "stand-in server: not starting" >&2; exit 1; fi
exit 0
"""


def _setup(tmp_path: Path) -> dict[str, str]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".unimiss-installed").write_text(hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest() + "\n")
    label_venv = tmp_path / "label-venv"
    (label_venv / "bin").mkdir(parents=True)
    (label_venv / "bin" / "python").write_text(FAKE_LABEL_PYTHON)
    (label_venv / "bin" / "python").chmod(0o755)
    (label_venv / ".monailabel-installed").touch()
    app = label_venv / "monailabel" / "sample-apps" / "monaibundle"
    app.mkdir(parents=True)
    (app / "main.py").write_text("# the sample app\n")
    work, studies = tmp_path / "work", tmp_path / "studies"
    studies.mkdir()
    # weights trained per overlay (train/<overlay>/<bundle>), so no training runs here; train/<bundle> is where the
    # script once kept them for every overlay alike, and must not be served
    for folder, content in (("smoke", b"weights"), ("demo", b"demo weights"), ("", b"weights of an unknown overlay")):
        weights = work / "train" / folder / BUNDLE / "models" / "model.pt"
        weights.parent.mkdir(parents=True)
        weights.write_bytes(content)
    return {**os.environ, "UNIMISS_VENV": str(venv), "UNIMISS_LABEL_VENV": str(label_venv), "WORK": str(work),
            "STUDIES": str(studies), "BUNDLE": BUNDLE, "INFER_OVERLAYS": "", "OMP_NUM_THREADS": "1"}


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def _served(env: dict[str, str]) -> bytes:
    return (Path(env["WORK"]) / "app" / "model" / BUNDLE / "models" / "model.pt").read_bytes()


def _fails_at_server_start(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 1 and "server exited during start-up" in result.stdout


def _assert_a_later_file_stops_the_rerun(env: dict, saved: Path, message: str) -> None:
    """A file written into the prepared app after the script prepared it (as the server's /train writes) makes the
    rerun refuse (exit 2, ``message``) and is left as it was."""
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(b"a clinician's work")
    refused = _run(env)
    assert refused.returncode == 2 and message in refused.stdout, refused.stdout
    assert saved.read_bytes() == b"a clinician's work"


def test_a_failed_check_leaves_a_folder_the_rerun_rebuilds(tmp_path):
    env = _setup(tmp_path)
    first = _run(env)
    assert first.returncode == 1 and "server exited during start-up" in first.stdout, first.stdout + first.stderr
    app = Path(env["WORK"]) / "app"
    assert (app / "model" / BUNDLE / "models" / "model.pt").read_bytes() == b"weights"
    again = _run(env)
    assert "not prepared by this script" not in again.stdout, again.stdout
    assert again.returncode == 1 and "server exited during start-up" in again.stdout, again.stdout + again.stderr
    # weights saved after the folder was prepared (as /train saves them) still stop a rerun, and stay
    _assert_a_later_file_stops_the_rerun(env, app / "model" / BUNDLE / "models" / "model_trained.pt",
                                         "was saved after this folder was prepared")


def test_each_overlay_serves_the_weights_trained_with_it(tmp_path):
    env = _setup(tmp_path)
    first = _run(env)
    assert _fails_at_server_start(first), first.stdout + first.stderr
    assert _served(env) == b"weights"
    assert f"trained earlier with configs/smoke.yaml ({env['WORK']}/train/smoke/{BUNDLE}/models/model.pt" in first.stdout
    demo = _run({**env, "OVERLAY": "demo.yaml"})
    assert _fails_at_server_start(demo), demo.stdout + demo.stderr
    assert _served(env) == b"demo weights"
    assert f"trained earlier with configs/demo.yaml ({env['WORK']}/train/demo/{BUNDLE}/models/model.pt" in demo.stdout
    # an overlay the bundle lacks stops the run before anything is rebuilt
    missing = _run({**env, "OVERLAY": "nope.yaml"})
    assert missing.returncode == 2 and f"bundles/{BUNDLE}/configs/nope.yaml does not exist" in missing.stdout, missing.stdout
    assert _served(env) == b"demo weights"


def test_checkpoints_a_stopped_train_left_stop_the_rerun(tmp_path):
    env = _setup(tmp_path)
    assert _fails_at_server_start(_run(env))
    # /train writes <bundle>/eval (checkpoints to resume from, its best model); stopped, it leaves model.pt unchanged
    _assert_a_later_file_stops_the_rerun(env, Path(env["WORK"]) / "app" / "model" / BUNDLE / "eval" / "checkpoints" /
                                         "checkpoint.pt", "eval/checkpoints/checkpoint.pt was saved after")


def test_a_preparation_that_failed_halfway_does_not_block_the_rerun(tmp_path):
    env = _setup(tmp_path)
    main_py = Path(env["UNIMISS_LABEL_VENV"]) / "monailabel" / "sample-apps" / "monaibundle" / "main.py"
    main_py.unlink()
    main_py.mkdir()  # appending the app's extensions to it fails after the weights were copied in
    broken = _run(env)
    assert broken.returncode == 1 and (Path(env["WORK"]) / "app" / "model" / BUNDLE / "models" / "model.pt").exists()
    main_py.rmdir()
    main_py.write_text("# the sample app\n")
    again = _run(env)
    assert "not prepared by this script" not in again.stdout, again.stdout
    assert _fails_at_server_start(again) and "left half-built" in again.stdout, again.stdout + again.stderr
    # prepared in full this time: a clinician's label or weights stop the next rerun again
    saved = Path(env["WORK"]) / "app" / "model" / BUNDLE / "models" / "model_trained.pt"
    saved.write_bytes(b"a clinician's model")
    refused = _run(env)
    assert refused.returncode == 2 and "was saved after this folder was prepared" in refused.stdout, refused.stdout
    assert saved.read_bytes() == b"a clinician's model"
