"""Two gloo processes on 127.0.0.1 (``torchrun``): when every sample of one process's batch fails to load, every
process passes that iteration over, so their DDP gradient all-reduces stay paired and the run ends, in step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

SCRIPT = '''
import json, os, sys
import torch
import torch.distributed as dist
sys.path.insert(0, {engines!r})
from test_pretraining_toys import OUT_DIM, ToyBackbone, ToyHead, toy_items
from unimiss_monai.data.loaders import COUNT_KEY, SKIPPED_KEY, PhaseLoader
from unimiss_monai.engines.pretraining import PretrainingTrainer
from unimiss_monai.losses import UniMissPlusLoss
from unimiss_monai.networks.nets.student_teacher import StudentTeacher
from unimiss_monai.utils.dist import destroy_distributed, init_distributed

init_distributed()
rank = dist.get_rank()
items = toy_items(4)


class Scripted(PhaseLoader):
    def __init__(self):
        super().__init__(ct_loader=[None] * 4, epoch_length=4)

    def __iter__(self):
        for it in range(self.start, self.epoch_length):
            if rank == 0 and it == 1:  # every sample of this batch failed, on rank 0 only
                yield "ct", {{SKIPPED_KEY: ["/missing.nii.gz"], COUNT_KEY: 0, "empty": True}}
            else:
                yield "ct", {{k: v[None] for k, v in items[(it + rank) % 4].items()}} | {{COUNT_KEY: 1}}


torch.manual_seed(0)
net = StudentTeacher(ToyBackbone(), ToyHead())
opt = torch.optim.SGD(net.student.parameters(), lr=0.1)
trainer = PretrainingTrainer("cpu", 2, Scripted(), net, opt, UniMissPlusLoss(out_dim=OUT_DIM),
                             momentum_schedule=lambda s: 0.9, slice_channels=1, clip_grad_norm=0.0)
trainer.run()
weights = torch.cat([p.detach().flatten() for p in net.student.parameters()])
gathered = [torch.zeros_like(weights) for _ in range(2)]
dist.all_gather(gathered, weights)
# one file per process: the two processes' stdout lines may interleave
with open({out!r} + f"/result_{{rank}}.json", "w") as f:
    json.dump({{"rank": rank, "steps": trainer.state.optimizer_step, "same": bool(torch.equal(gathered[0], gathered[1]))}}, f)
destroy_distributed()
# gloo's worker threads outlive destroy_process_group once a DDP module was built (torch keeps the group alive), and
# one caught mid-cleanup by the interpreter's teardown aborts the process after all the work is done: leave at once
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
'''


def test_an_empty_batch_on_one_process_is_passed_over_by_all(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(engines=str(Path(__file__).parent), out=str(tmp_path)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # without the fix the processes' all-reduces pair off by one and the run hangs at its end: bounded here
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("result_*.json"))]
    assert sorted(r["rank"] for r in results) == [0, 1]
    # 2 epochs of 4 iterations, the second of each passed over by both processes: 6 steps each, the same weights
    assert all(r["steps"] == 6 and r["same"] for r in results), results
    assert "another process's batch held no readable sample" in proc.stderr + proc.stdout
