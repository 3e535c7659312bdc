"""``run_on_two_ranks(fn, *args)``: ``fn(rank, *args)`` in two spawned processes joined in a gloo group on 127.0.0.1,
as ``torchrun --nproc_per_node=2`` would run it on a CPU; returns when both have finished (an error in one fails)."""

from __future__ import annotations

import socket

import torch.distributed as dist
import torch.multiprocessing as mp


def run_on_two_ranks(fn, *args) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_member, args=(port, fn, args), nprocs=2, join=True, start_method="spawn")


def _member(rank: int, port: int, fn, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    from unimiss_monai.utils.dist import destroy_distributed

    try:
        fn(rank, *args)
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other rank may never reach it
        raise
    # as a run leaves: a barrier, then every group destroyed and the coordination group forgotten (a destroyed group
    # still referenced at interpreter exit aborted the process, SIGABRT)
    destroy_distributed()
