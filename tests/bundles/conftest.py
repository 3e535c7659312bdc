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


@pytest.fixture(scope="session")
def pretraining_samples(sample_set) -> Path:
    """The samples folder holding the synthetic ``pretraining`` data set (``dataset_dir`` of the pretraining runs)."""
    return sample_set("pretraining")


# modules that train or run whole bundles (minutes each on 2 cores): `tools/test.sh --fast` leaves them out
_WHOLE_BUNDLE_RUNS = {
    "test_unimiss_ct_segmentation", "test_unimiss_cxr_segmentation", "test_unimiss_ct_classification",
    "test_unimiss_cxr_classification", "test_bad_inputs", "test_finetune_resume", "test_multi_gpu_finetune",
    "test_cxr_output_layout", "test_drr_sharded", "test_evaluation_bad_cases", "test_training_missing_files",
    "test_inference_datalist_folder", "test_cxr_implausible_inputs",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in _WHOLE_BUNDLE_RUNS:
            item.add_marker(pytest.mark.slow)
