"""The few distributed steps every multi-GPU overlay needs, as named functions so the overlays stay one short line each.

``torchrun`` sets ``LOCAL_RANK``, ``RANK`` and ``WORLD_SIZE``; NCCL needs CUDA, so CPU runs (tests, laptops, the
two-process stand-in for two nodes) use gloo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = [
    "COORDINATION_TIMEOUT", "any_rank", "broadcast_object", "coordination_group", "destroy_distributed",
    "gather_objects", "in_process_group", "init_distributed", "is_rank_zero", "local_device", "local_rank",
    "rank_and_world", "rank_zero_handlers", "share_cpu_threads", "train_sampler",
]

#: how long a rank waits in a :func:`coordination_group` collective for the slowest one (the default group gives
#: up after 10 min under NCCL, 30 min under gloo). A rank that dies closes its connections, which fails the others'
#: collective at once, so the wait is this long only while a rank still works (or hangs)
COORDINATION_TIMEOUT = timedelta(hours=24)

# (default group, gloo group) of the current process group: made once, made again for a new process group
_coordination: tuple | None = None


def local_rank() -> int:
    """This process's rank on its own machine (``LOCAL_RANK``, as ``torchrun`` sets it; 0 without it)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def local_device() -> torch.device:
    """The device of this process: ``cuda:<LOCAL_RANK>`` when CUDA exists, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank()}")
    return torch.device("cpu")


def share_cpu_threads() -> None:
    """Split this machine's cores between the processes ``torchrun`` started on it (``LOCAL_WORLD_SIZE``): numba's
    and torch's thread pools default to every core in each process, which oversubscribes them."""
    import numba

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_rank = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    numba.set_num_threads(min(per_rank, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(per_rank)


def init_distributed() -> bool:
    """Join the process group ``torchrun`` describes (NCCL on CUDA, gloo on CPU); a no-op when already joined.

    Also pins this process to its GPU, so collective calls do not all land on ``cuda:0``.
    """
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_device())
    return True


def destroy_distributed() -> None:
    """Leave the process group at the end of a run (a no-op when none was joined), so ``torchrun`` exits cleanly.

    Every process first waits at a barrier: a process that shut its connections down while another was still
    finishing its last collective could abort that one at exit. The barrier is the :func:`coordination_group`'s when
    one was made: ranks that end a run at different times (each its own share of an archive) would otherwise abort
    there after the default group's 10 (NCCL) or 30 (gloo) minutes. None is made here, so a run that never needed
    one leaves through the default group's barrier.
    """
    global _coordination
    if dist.is_available() and dist.is_initialized():
        group = _coordination[1] if _coordination is not None and _coordination[0] is dist.group.WORLD else None
        if group is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            # a gloo barrier does not wait for this rank's NCCL kernels, which the default group's barrier did: once
            # every rank has finished its own here, no collective of any rank is left in flight at the barrier's end
            torch.cuda.synchronize()
        dist.barrier(group=group)
        dist.destroy_process_group()
    _coordination = None


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """``flag`` of this process, or'ed over every process of the group (``flag`` itself when there is none).

    An iteration that one process must pass over (every sample of its batch failed to load) is passed over by all:
    DDP pairs each backward's gradient all-reduces across processes, so a process that skipped one alone would pair
    its next step with the others' current one, and the run would hang at its end.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bool(flag)
    value = torch.tensor([float(bool(flag))], device=device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def is_rank_zero() -> bool:
    """True on the process that writes logs and files (rank 0), and in a single-process run."""
    return rank_and_world()[0] == 0


def rank_zero_handlers(handlers: Sequence, keep_on_all: Sequence[type] = ()) -> list:
    """``handlers`` on rank 0; on the other ranks only the instances of ``keep_on_all``.

    Handlers that print or write (stats, checkpoints, reports) run once; handlers every rank must run to stay in step
    (e.g. a checkpoint that gathers state, or one that freezes layers on a schedule) are listed in ``keep_on_all``.
    """
    if is_rank_zero():
        return list(handlers)
    keep = tuple(keep_on_all)
    return [h for h in handlers if keep and isinstance(h, keep)]


def train_sampler(dataset, weights: Sequence[float] | None = None):
    """The training sampler of a multi-process run: each rank draws its shard of ``dataset`` shuffled (MONAI's
    ``DistributedSampler``), or by ``weights`` (``DistributedWeightedRandomSampler``, the counterpart of a
    single-process ``WeightedRandomSampler``) so that class-balanced sampling holds under DDP too."""
    from monai.data import DistributedSampler, DistributedWeightedRandomSampler

    if weights is None:
        return DistributedSampler(dataset, even_divisible=True, shuffle=True)
    return DistributedWeightedRandomSampler(dataset, list(weights), even_divisible=True)


def in_process_group() -> bool:
    """Whether this process is in a ``torch.distributed`` process group (collectives must then be called on every rank)."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks (0, 1 outside a process group)."""
    if in_process_group():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def coordination_group():
    """A gloo group of every rank with a long timeout (:data:`COORDINATION_TIMEOUT`), for the collectives that wait
    for the slowest rank's whole share of work (the end of a long archive): in the default group they would be
    aborted after 10 minutes under NCCL, 30 under gloo. ``None`` (the default group) with one rank or without a
    process group, where there is nobody to wait for.

    Made on the first call, which every rank must make at the same point (as any collective); later calls return it.
    """
    global _coordination
    if rank_and_world()[1] == 1:
        return None
    if _coordination is None or _coordination[0] is not dist.group.WORLD:
        _coordination = (dist.group.WORLD, dist.new_group(backend="gloo", timeout=COORDINATION_TIMEOUT))
    return _coordination[1]


def broadcast_object(value, group=None):
    """Rank 0's ``value`` (any picklable object) on every rank of ``group`` (the default group when ``None``); the
    value itself outside a process group."""
    if rank_and_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def gather_objects(items: list, group=None) -> list:
    """Every rank's ``items`` concatenated in rank order, on every rank of ``group`` (the default group when
    ``None``); a barrier too."""
    if rank_and_world()[1] == 1:
        return list(items)
    parts: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(parts, list(items), group=group)
    return [item for part in parts for item in part]
