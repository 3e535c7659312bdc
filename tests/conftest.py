"""Shared fixtures: tiny synthetic data, and the repository paths the bundle tests need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
SCHEMA = REPO.parent / "shared" / "schema" / "meta_schema_20240725.json"

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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def repo_root() -> Path:
    return REPO
