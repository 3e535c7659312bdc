"""Two nodes on one machine: the CT segmentation bundle's ``multi_gpu_train.json`` overlay under two separate
``torchrun`` launchers (``--nnodes=2 --nproc_per_node=1``) that meet through a c10d rendezvous on the loopback
address, as two hosts of a Slurm or Kubernetes job would; one smoke epoch on CPU (gloo)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch

from bundle_runner import BUNDLES, configs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUNDLE = "unimiss_ct_segmentation"
# the smallest smoke run the MiT+ strides accept (as in test_multi_gpu_finetune)
OVERRIDES = {"roi_size": "[16, 32, 32]", "pixdim": "[10.0, 10.0, 10.0]", "max_epochs": "1"}
TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher(node: int, endpoint: str, run_id: str, dataset_dir: str, out: str) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
           "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={run_id}",
           # node 0 hosts the rendezvous store; both advertise the loopback address, never the host name
           f"--rdzv_conf=is_host={int(node == 0)},join_timeout=120", "--local_addr=127.0.0.1",
           "-m", "monai.bundle", "run",
           "--config_file", str(configs(BUNDLE, "train.json", "multi_gpu_train.json", "smoke.yaml")),
           "--meta_file", configs(BUNDLE, "metadata.json")[0], "--logging_file", configs(BUNDLE, "logging.conf")[0],
           "--bundle_root", str(BUNDLES / BUNDLE), "--dataset_dir", dataset_dir, "--output_dir", out]
    for key, value in OVERRIDES.items():
        cmd += [f"--{key}", value]
    return cmd


@pytest.mark.skipif(torch.cuda.is_available(), reason="the two nodes share this machine's CPU")
def test_two_launchers_form_one_two_node_job(sample_set, tmp_path):
    endpoint, run_id = f"127.0.0.1:{_free_port()}", f"multi-node-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    dataset = str(sample_set("ct_segmentation"))
    procs, logs = [], []
    try:
        for node in (0, 1):
            log = open(tmp_path / f"node{node}.log", "w+")
            logs.append(log)
            procs.append(subprocess.Popen(_launcher(node, endpoint, run_id, dataset, str(tmp_path)), stdout=log,
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
    assert codes == [0, 0], "\n----- node 1 -----\n".join(t[-3000:] for t in text)

    both = "".join(text)
    # one process per launcher, one group of two: each rank's evaluator reports the metric gathered over both
    values = re.findall(r"Got new best metric of val_mean_dice: ([-0-9.e]+)", both)
    assert len(values) == 2 and values[0] == values[1], values
    assert all("Got new best metric" in t for t in text)  # one rank on each node
    # rank 0 alone keeps the stats handlers and saves the model
    assert len(re.findall(r"Epoch\[1\] Metrics -- val_mean_dice", both)) == 1
    ckpt = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert ckpt["info"]["bundle"] == BUNDLE and not any(k.startswith("module.") for k in ckpt["model"])
