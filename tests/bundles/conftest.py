"""Fixtures shared by the bundle tests: the synthetic sample sets, built once per session. The helpers that run a
bundle are in ``bundle_runner.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory) -> Callable[[str], Path]:
    """``sample_set(name)`` builds the synthetic ``name`` data set (once per session) and returns the samples folder
    that holds it (what the bundles take as ``dataset_dir``)."""
    from unimiss_monai.data.samples import samples

    root = tmp_path_factory.mktemp("samples")
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            built[name] = Path(samples(str(root), synthetic=True, only=name))
        return built[name]

    return build
