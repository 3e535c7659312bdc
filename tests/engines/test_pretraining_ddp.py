"""Two gloo processes on 127.0.0.1 (``torchrun``): when every sample of one process's batch fails to load, every
process passes that iteration over, so their DDP gradient all-reduces stay paired and the run ends, in step; a
checkpoint saved mid-epoch names the samples every process failed to load, not rank 0's alone."""

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
            if rank in {fail_ranks} and it == 1:  # every sample of this batch failed, on these ranks
                yield "ct", {{SKIPPED_KEY: [f"/missing_{{rank}}.nii.gz"], COUNT_KEY: 0, "empty": True}}
            else:
                yield "ct", {{k: v[None] for k, v in items[(it + rank) % 4].items()}} | {{COUNT_KEY: 1}}


torch.manual_seed(0)
net = StudentTeacher(ToyBackbone(), ToyHead())
opt = torch.optim.SGD(net.student.parameters(), lr=0.1)
trainer = PretrainingTrainer("cpu", 2, Scripted(), net, opt, UniMissPlusLoss(out_dim=OUT_DIM),
                             momentum_schedule=lambda s: 0.9, slice_channels=1, clip_grad_norm=0.0)
{extra}
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


# a checkpoint every 2 iterations, and a copy of the one saved at iteration 2, before the epoch's end pools failures
CHECKPOINT = '''
import shutil
from ignite.engine import Events
from unimiss_monai.handlers import TrainingCheckpoint

TrainingCheckpoint({out!r}, {{"network": net}}, save_every=2, resume=False).attach(trainer)


@trainer.on(Events.ITERATION_COMPLETED(once=2))
def keep(engine):
    if rank == 0:
        shutil.copy({out!r} + "/checkpoint.pt", {out!r} + "/at_iteration_2.pt")
'''


def _torchrun(tmp_path: Path, fail_ranks: list[int], extra: str = "") -> subprocess.CompletedProcess:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(engines=str(Path(__file__).parent), out=str(tmp_path), fail_ranks=fail_ranks,
                                    extra=extra.format(out=str(tmp_path))))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # without the fix the processes' all-reduces pair off by one and the run hangs at its end: bounded here
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_an_empty_batch_on_one_process_is_passed_over_by_all(tmp_path):
    proc = _torchrun(tmp_path, [0])
    results = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("result_*.json"))]
    assert sorted(r["rank"] for r in results) == [0, 1]
    # 2 epochs of 4 iterations, the second of each passed over by both processes: 6 steps each, the same weights
    assert all(r["steps"] == 6 and r["same"] for r in results), results
    assert "another process's batch held no readable sample" in proc.stderr + proc.stdout


def test_a_checkpoint_mid_epoch_names_every_process_failures(tmp_path):
    import torch

    _torchrun(tmp_path, [0, 1], CHECKPOINT)
    trainer = torch.load(tmp_path / "at_iteration_2.pt", weights_only=True)["trainer"]
    assert trainer["iteration"] == 2 and trainer["skipped_samples"] == 2
    assert sorted(trainer["failed_samples"]) == ["/missing_0.nii.gz", "/missing_1.nii.gz"]


def test_a_checkpoint_mid_epoch_holds_each_process_epoch_counts_and_each_resumes_its_own(tmp_path):
    import torch
    from test_pretraining_toys import build_trainer

    from unimiss_monai.engines.epoch_counts import BY_RANK

    _torchrun(tmp_path, [1], CHECKPOINT)  # only process 1 failed to load a sample, in iteration 1
    saved = torch.load(tmp_path / "at_iteration_2.pt", weights_only=True)["trainer"]
    by_rank = saved[BY_RANK]
    assert [c["first_failure"] for c in by_rank] == [{}, {"ct": "/missing_1.nii.gz"}]
    assert saved["first_failure"] == {}  # rank 0's, where earlier versions kept only those
    for rank in (0, 1):
        trainer = build_trainer(max_epochs=2, n_ct=4, n_xray=0, batch_size=1)[0]
        trainer.state.rank = rank
        trainer.load_state_dict(saved)
        assert trainer.state.first_failure == by_rank[rank]["first_failure"]
        assert trainer.state.samples_trained == by_rank[rank]["samples_trained"]


def test_a_process_the_checkpoint_holds_no_counts_of_counts_afresh_and_says_so(caplog):
    from unimiss_monai.engines.epoch_counts import BY_RANK, saved_epoch_counts

    counts = {"samples_trained": {"ct": 5, "xray": 0}, "phase_iterations": {"ct": 5, "xray": 0}, "first_failure": {},
              "epoch_accumulators": {}}
    mid_epoch = {"iteration": 6, "epoch_length": 4}
    two = {**counts, **mid_epoch, BY_RANK: [counts, {**counts, "samples_trained": {"ct": 3, "xray": 0}}]}
    single = {**counts, **mid_epoch}  # a single process's checkpoint, resumed by two
    with caplog.at_level("WARNING"):
        assert saved_epoch_counts(two, 1)["samples_trained"] == {"ct": 3, "xray": 0}
        assert saved_epoch_counts(single, 0)["samples_trained"] == {"ct": 5, "xray": 0}
        # at an epoch's end nothing of the next is lost: the counts start afresh there anyway
        assert saved_epoch_counts({**single, "iteration": 8}, 1)["samples_trained"] == {"ct": 0, "xray": 0}
        assert not caplog.records
        assert saved_epoch_counts(two, 2)["samples_trained"] == {"ct": 0, "xray": 0}  # 2 ranks, now 3
        assert saved_epoch_counts(single, 1)["samples_trained"] == {"ct": 0, "xray": 0}
    assert [r.getMessage() for r in caplog.records] == [
        "the checkpoint holds the epoch counts of 2 process(es); process 2 counts the samples of the epoch it resumes "
        "from the resume point on",
        "the checkpoint holds the epoch counts of 1 process(es); process 1 counts the samples of the epoch it resumes "
        "from the resume point on"]
