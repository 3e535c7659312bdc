"""Helpers that run a bundle the two ways a user does: in-process through ``monai.bundle.ConfigWorkflow``, or through
``python -m monai.bundle run`` (optionally under ``torchrun``). Test modules import them as a module
(``from bundle_runner import ...``); fixtures live in ``conftest.py``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
SCHEMA = REPO / "unimiss_monai" / "resources" / "meta_schema_20240725.json"  # the copy shipped in the package


def configs(bundle: str, *names: str) -> list[str]:
    """Paths of ``bundles/<bundle>/configs/<name>`` for each name, in order (later files override earlier ones)."""
    return [str(BUNDLES / bundle / "configs" / n) for n in names]


def run_workflow(
    bundle: str, files: Sequence[str], workflow_type: str, *, run: bool = True, check: bool = True, failed: int = 0,
    **overrides,
):
    """Initialise ``bundles/<bundle>/configs/<files>`` (with the bundle's metadata and logging) as a ConfigWorkflow,
    check its properties (``check=True``), then (``run=True``) run and finalise it. Returns the workflow.

    ``failed``: the number of inference cases expected to fail; the run must then end with the inference summary's
    error, raised after the other cases are written."""
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=configs(bundle, *files), meta_file=configs(bundle, "metadata.json")[0],
        logging_file=configs(bundle, "logging.conf")[0], workflow_type=workflow_type, **overrides,
    )
    wf.initialize()
    if check:
        assert wf.check_properties() == []
    if run:
        if failed:
            from unimiss_monai.utils.errors import root_cause

            try:
                wf.run()
            except Exception as err:  # noqa: BLE001 - monai.bundle wraps the summary's RuntimeError
                message = str(root_cause(err))
                assert re.match(rf"inference: {failed} of \d+ cases failed", message), message
            else:
                raise AssertionError(f"the run exited normally although {failed} case(s) failed")
        else:
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


def smoke_weights(bundle: str, root: Path) -> None:
    """``<root>/models/smoke/model.pt``: the smoke-size network of ``bundle`` at its initialisation, for runs that need
    weights but not good ones (evaluation, inference)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "smoke.yaml"))
    parser.update({"bundle_root": str(root), "pretrained_path": None})
    torch.manual_seed(0)
    folder = root / "models" / "smoke"
    folder.mkdir(parents=True)
    torch.save({"model": parser.get_parsed_content("network_def").state_dict()}, folder / "model.pt")
