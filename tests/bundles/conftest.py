"""Set-up shared by the bundle tests: the synthetic sample sets, built once per session, and helpers that run a bundle
(in-process through ``monai.bundle.ConfigWorkflow``, or as a user would, through ``python -m monai.bundle run``,
optionally under ``torchrun``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

# the same paths as tests/conftest.py: test modules import them with ``from conftest import ...``, which resolves to
# whichever conftest pytest loaded last
REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
SCHEMA = REPO / "unimiss_monai" / "resources" / "meta_schema_20240725.json"  # the copy shipped in the package


def configs(bundle: str, *names: str) -> list[str]:
    """Paths of ``bundles/<bundle>/configs/<name>`` for each name, in order (later files override earlier ones)."""
    return [str(BUNDLES / bundle / "configs" / n) for n in names]


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


def run_workflow(
    bundle: str, files: Sequence[str], workflow_type: str, *, run: bool = True, check: bool = True, **overrides
):
    """Initialise ``bundles/<bundle>/configs/<files>`` (with the bundle's metadata and logging) as a ConfigWorkflow,
    check its properties (``check=True``), then (``run=True``) run and finalise it. Returns the workflow."""
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=configs(bundle, *files), meta_file=configs(bundle, "metadata.json")[0],
        logging_file=configs(bundle, "logging.conf")[0], workflow_type=workflow_type, **overrides,
    )
    wf.initialize()
    if check:
        assert wf.check_properties() == []
    if run:
        wf.run()
        wf.finalize()
    return wf


def run_bundle_cli(
    bundle: str, files: Sequence[str], *, nproc: int = 0, master_port: int = 29531, timeout: int = 600,
    cwd: Path = REPO, **overrides,
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` on ``files`` with ``--key value`` overrides (values JSON-encoded unless strings);
    with ``nproc`` > 0 under ``torchrun --nproc_per_node=nproc`` on CPU (gloo). Returns the finished process."""
    launcher = [sys.executable, "-m", "monai.bundle", "run"]
    if nproc:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                    f"--master_port={master_port}", "-m", "monai.bundle", "run"]
    cmd = [*launcher, "--config_file", str(configs(bundle, *files)), "--meta_file", configs(bundle, "metadata.json")[0],
           "--logging_file", configs(bundle, "logging.conf")[0]]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    threads = "1" if nproc else "2"  # two cores: one per process under torchrun
    env = {**os.environ, "OMP_NUM_THREADS": threads, **({"CUDA_VISIBLE_DEVICES": ""} if nproc else {})}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
