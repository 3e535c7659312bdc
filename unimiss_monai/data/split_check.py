"""The check of a training split's items before any work, dealt out over the ranks of a process group.

:func:`~unimiss_monai.data.disk_cache.cached_dataset` runs every item of a
:class:`~unimiss_monai.data.tolerant.DatalistSplit` through its loading and input checks and refuses the split naming
each item that fails. Under ``torchrun`` every rank builds the same data set, so a check of every item on every rank
decoded each item once per rank (and on a cold disk cache wrote each entry once per rank). Here, with ``W`` ranks,
rank ``r`` checks only the items ``i`` with ``i % W == r`` (its share; on a shared disk cache it stores their
entries, which the other ranks read back when they draw them), and the ranks then pool their failures over the
:func:`~unimiss_monai.utils.dist.coordination_group`, every rank receiving all of them: each rank reaches the same
verdict and raises the same refusal, as a rank that went on alone would wait for the others at its first collective
until they timed out. Without a process group (or with one rank) every item is checked here, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.transforms import Compose, RandomizableTrait, Transform

from unimiss_monai.data.tolerant import failed_case
from unimiss_monai.utils.dist import coordination_group, gather_objects, rank_and_world
from unimiss_monai.utils.once import said, take_said

__all__ = ["deterministic_head", "item_failures", "shared_failures"]


def item_failures(items: Sequence[dict], run: Callable, num_workers: int | None = 0, progress: bool = True,
                  indices: Sequence[int] | None = None, desc: str = "Checking dataset") -> dict[int, str]:
    """``{index: reason}`` of the ``items`` (those at ``indices``, every one by default) on which ``run(item)``
    fails (the reason as :func:`~unimiss_monai.data.tolerant.failed_case` words and logs it); every item is run,
    whatever failed before, in ``num_workers`` threads (decoding and the checks release the GIL, as in MONAI's cache
    fill), with a progress bar ``desc``."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    def attempt(index: int) -> tuple[int, str | None]:
        try:
            run(items[index])
        except Exception as err:  # noqa: BLE001 - every failing item is named, not only the first
            return index, failed_case(items[index], index, err)
        return index, None

    chosen = range(len(items)) if indices is None else indices
    with ThreadPoolExecutor(max_workers=max(1, int(num_workers or 0))) as pool:
        done = tqdm(pool.map(attempt, chosen), total=len(chosen), desc=desc, disable=not progress)
        return {index: reason for index, reason in done if reason is not None}


def shared_failures(items: Sequence[dict], run: Callable, num_workers: int | None = 0,
                    progress: bool = True) -> dict[int, str]:
    """:func:`item_failures` of every item, each run on one rank only: this rank runs its share (``i % W == r``)
    and receives every rank's failures. A collective under a process group: every rank calls it at the same point.

    Only rank 0 shows a progress bar, of its own share: ``torchrun`` merges the ranks' output into one stream, where
    W bars redrawn over each other make one garbled line (in a terminal and in a job's log file alike), and the
    shares differ by one item at most, so rank 0's bar tells roughly how far the whole check is.
    """
    rank, world = rank_and_world()
    if world == 1:
        return item_failures(items, run, num_workers, progress)
    share = range(rank, len(items), world)
    mine = item_failures(items, run, num_workers, progress and rank == 0, share,
                         desc=f"Checking dataset (rank 0's share, 1/{world})")
    # the long-timeout gloo group: the slowest rank may decode its share of a large archive for hours, past the
    # default group's 10 (NCCL) or 30 (gloo) minutes; all ranks receive all, so all refuse alike (refuse_failures
    # orders the items by their place in the datalist, whatever rank found them)
    # what each rank's share said once (a label file's warning) is pooled too: the items of the other shares reach
    # this rank's data-loading workers, which said it again, every epoch
    shares = gather_objects([(sorted(mine.items()), said())], coordination_group())
    for _, other in shares:
        take_said(other)
    return {index: reason for failures, _ in shares for index, reason in failures}


def deterministic_head(transform: Sequence[Callable] | Callable) -> Callable:
    """``transform`` up to its first random transform, the part a MONAI ``CacheDataset`` caches (loading and the
    input checks): a random transform fails a bad item no more than the head did."""
    compose = transform if isinstance(transform, Compose) else Compose(transform)
    first_random = compose.get_index_of_first(
        lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform))
    return lambda item: compose(item, end=first_random, threading=True)
