"""The few distributed steps every multi-GPU overlay needs, as named functions so the overlays stay one short line each.

``torchrun`` sets ``LOCAL_RANK``, ``RANK`` and ``WORLD_SIZE``; NCCL needs CUDA, so CPU runs (tests, laptops, the
two-process stand-in for two nodes) use gloo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = [
    "any_rank", "broadcast_object", "destroy_distributed", "gather_objects", "in_process_group", "init_distributed",
    "is_rank_zero", "local_device", "rank_and_world", "rank_zero_handlers", "train_sampler",
]


def local_device() -> torch.device:
    """The device of this process: ``cuda:<LOCAL_RANK>`` when CUDA exists, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


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
    finishing its last collective could abort that one at exit.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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


def broadcast_object(value):
    """Rank 0's ``value`` (any picklable object) on every rank; the value itself outside a process group."""
    if rank_and_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(items: list) -> list:
    """Every rank's ``items`` concatenated in rank order, on every rank; a barrier too."""
    if rank_and_world()[1] == 1:
        return list(items)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]
