"""Shared fixtures: tiny synthetic data, and the repository paths the bundle tests need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
SCHEMA = REPO / "unimiss_monai" / "resources" / "meta_schema_20240725.json"  # the copy shipped in the package

# two cores in CI: keep torch from oversubscribing when pytest runs several processes
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def one_thread():
    """Run a test single-threaded: on tiny tensors a second intra-op thread only adds synchronisation, which on a
    shared 2-core CPU makes toy runs about 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _bundle_files() -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in BUNDLES.rglob("*") if p.is_file()}


@pytest.fixture(autouse=True)
def _bundles_unchanged():
    """No bundle run may write under bundles/ (weights go there only through an explicit publish step); checked
    around every test, so the test that wrote is the one that fails."""
    before = _bundle_files()
    yield
    after = _bundle_files()
    changed = sorted(str(p.relative_to(REPO)) for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"this test changed {len(changed)} file(s) under bundles/, e.g. {changed[:5]}"


@pytest.fixture(autouse=True)
def _process_hooks_restored():
    """install_error_hook (the CLI, a bundle run in process) replaces sys.excepthook, the log record factory and the
    SIGTERM handler for the process: each test gets them back as they were (so SIGTERM still stops pytest itself)."""
    import logging
    import signal
    import sys

    from unimiss_monai.utils import stop_signal

    hook, factory, on_sigterm = sys.excepthook, logging.getLogRecordFactory(), signal.getsignal(signal.SIGTERM)
    state = dict(stop_signal._STATE)
    yield
    sys.excepthook = hook
    logging.setLogRecordFactory(factory)
    signal.signal(signal.SIGTERM, on_sigterm)
    stop_signal._STATE.update(state)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def repo_root() -> Path:
    return REPO
