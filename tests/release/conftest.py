"""Fixtures of the release tests: a real HTTP server on 127.0.0.1 (random port, stopped by PID) and small weights."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SERVER = Path(__file__).with_name("http_server.py")


@pytest.fixture
def serve():
    """``serve(root)`` starts ``http_server.py`` on ``root`` and returns its base URL; every server started is
    stopped by its PID at the end of the test (one that ended itself is only reaped)."""
    procs: list[subprocess.Popen] = []

    def start(root: Path) -> str:
        proc = subprocess.Popen([sys.executable, str(SERVER), str(root)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=30):
                raise RuntimeError("the test HTTP server printed no port within 30 s")
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the test HTTP server did not start (printed {line!r})")
        return f"http://127.0.0.1:{int(line)}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """A pretraining export of a tiny MiT+ backbone, as ``StudentTeacher.export`` writes it, with random weights."""
    from unimiss_monai.networks import backbone_info, build_backbone, tiny_overrides

    torch.manual_seed(0)
    backbone = build_backbone("mitplus", (2, 3), img_size={2: (64, 64), 3: (16, 64, 64)}, **tiny_overrides("mitplus"))
    path = tmp_path_factory.mktemp("export") / "model.pt"
    torch.save({"model": backbone.state_dict(), "info": backbone_info(backbone)}, path)
    return path
