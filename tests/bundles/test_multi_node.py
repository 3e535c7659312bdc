"""Two nodes on one machine: the ``multi_gpu_train.json`` overlay of the CT segmentation bundle and of the pretraining
bundle under two separate ``torchrun`` launchers (``--nnodes=2 --nproc_per_node=1``) that meet through a c10d
rendezvous on the loopback address, as two hosts of a Slurm or Kubernetes job would; one smoke epoch on CPU (gloo)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from bundle_runner import configs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUNDLE = "unimiss_ct_segmentation"
# the smallest smoke run the MiT+ strides accept (as in test_multi_gpu_finetune)
OVERRIDES = {"roi_size": "[16, 32, 32]", "pixdim": "[10.0, 10.0, 10.0]", "max_epochs": "1"}
PRETRAINING = "unimiss_pretraining"
TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bundle_run(bundle: str, config_files: tuple[str, ...], dataset_dir: str, out: str) -> list[str]:
    """``monai.bundle run`` of ``bundle`` with ``config_files`` merged in order (what follows ``-m``)."""
    return ["monai.bundle", "run", "--config_file", str(configs(bundle, *config_files)),
            "--meta_file", configs(bundle, "metadata.json")[0], "--logging_file", configs(bundle, "logging.conf")[0],
            # nothing written under bundles/: a bundle root of the run's own, beside (not at) its output folder
            "--bundle_root", str(Path(out) / "bundle"), "--dataset_dir", dataset_dir, "--output_dir", out]


def _launcher(node: int, endpoint: str, run_id: str, dataset_dir: str, out: str, bundle: str = BUNDLE,
              config_files: tuple[str, ...] = ("train.json", "multi_gpu_train.json", "smoke.yaml"),
              overrides: dict | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
           "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={run_id}",
           # node 0 hosts the rendezvous store; both advertise the loopback address, never the host name
           f"--rdzv_conf=is_host={int(node == 0)},join_timeout=120", "--local_addr=127.0.0.1",
           "-m", *_bundle_run(bundle, config_files, dataset_dir, out)]
    for key, value in (OVERRIDES if overrides is None else overrides).items():
        cmd += [f"--{key}", value]
    return cmd


def _two_nodes(tmp_path, dataset: str, **launcher) -> tuple[list[int], list[str]]:
    """Start both launchers, wait for them (bounded), and return their exit codes and logs."""
    endpoint, run_id = f"127.0.0.1:{_free_port()}", f"multi-node-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    procs, logs = [], []
    try:
        for node in (0, 1):
            log = open(tmp_path / f"node{node}.log", "w+")
            logs.append(log)
            procs.append(subprocess.Popen(_launcher(node, endpoint, run_id, dataset, str(tmp_path), **launcher), stdout=log,
                                          stderr=subprocess.STDOUT, env=env, start_new_session=True))
            time.sleep(2 if node == 0 else 0)  # the store host first
        deadline = time.monotonic() + TIMEOUT_S
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:  # each launcher runs in its own session: end it and its worker together
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    text = []
    for log in logs:
        log.seek(0)
        text.append(log.read())
        log.close()
    return codes, text


@pytest.mark.skipif(torch.cuda.is_available(), reason="the two nodes share this machine's CPU")
def test_two_launchers_form_one_two_node_job(sample_set, tmp_path):
    codes, text = _two_nodes(tmp_path, str(sample_set("ct_segmentation")))
    assert codes == [0, 0], "\n----- node 1 -----\n".join(t[-3000:] for t in text)

    both = "".join(text)
    # one process per launcher, one group of two: each rank's evaluator reports the metric gathered over both
    values = re.findall(r"Got new best metric of val_mean_dice: ([-0-9.e]+)", both)
    assert len(values) == 2 and values[0] == values[1], values
    assert all("Got new best metric" in t for t in text)  # one rank on each node
    # rank 0 alone keeps the stats handlers and saves the model
    assert len(re.findall(r"Epoch\[1\] Metrics -- val_mean_dice", both)) == 1
    ckpt = torch.load(tmp_path / "bundle" / "models" / "smoke" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["info"]["bundle"] == BUNDLE and not any(k.startswith("module.") for k in ckpt["model"])


def _trained_per_epoch(log: str) -> dict[int, tuple[int, int]]:
    return {int(e): (int(ct), int(xray)) for e, ct, xray in re.findall(r"epoch (\d+): trained on (\d+) CT and (\d+) X-ray", log)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the two nodes share this machine's CPU")
def test_pretraining_runs_as_one_two_node_job(pretraining_samples, tmp_path):
    """The pretraining bundle as two one-process nodes, for the smoke overlay's two epochs (CT, then X-ray): each node
    trains its own share, the shares add up to what one process trains, and rank 0 alone exports the teacher."""
    files = ("train.json", "smoke.yaml")
    single = subprocess.run(
        [sys.executable, "-m", *_bundle_run(PRETRAINING, files, str(pretraining_samples), str(tmp_path / "single"))],
        capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-3000:]
    one = _trained_per_epoch(single.stdout + single.stderr)
    assert set(one) == {1, 2} and one[1][0] > 0 and one[2][1] > 0, one

    codes, text = _two_nodes(tmp_path, str(pretraining_samples), bundle=PRETRAINING,
                             config_files=(*files, "multi_gpu_train.json"), overrides={})
    assert codes == [0, 0], "\n----- node 1 -----\n".join(t[-3000:] for t in text)
    nodes = [_trained_per_epoch(t) for t in text]
    assert all(set(n) == {1, 2} and n[1][0] > 0 and n[2][1] > 0 for n in nodes), nodes  # both train in both phases
    assert all(n[1][0] < one[1][0] and n[2][1] < one[2][1] for n in nodes), (nodes, one)  # a share, not all of it
    assert {e: tuple(sum(n[e][i] for n in nodes) for i in (0, 1)) for e in (1, 2)} == one, (nodes, one)
    export = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert export["model"] and not any(k.startswith("module.") for k in export["model"])
