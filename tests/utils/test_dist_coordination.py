"""``coordination_group``: the collectives that wait for the slowest rank's whole share of work (the end of a DRR
archive) go over a gloo group with a long timeout, made once; without a process group they need none."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "handlers"))

from gloo_ranks import run_on_two_ranks  # noqa: E402

from unimiss_monai.utils.dist import (COORDINATION_TIMEOUT, broadcast_object, coordination_group,  # noqa: E402
                                      destroy_distributed, gather_objects, local_rank)


def _rank(rank: int) -> None:
    import torch.distributed as dist

    made = []
    new_group = dist.new_group

    def recorded(*args, **kwargs):
        made.append(kwargs)
        return new_group(*args, **kwargs)

    dist.new_group = recorded  # this process ends with the test
    group = coordination_group()
    assert group is not None and coordination_group() is group  # made once, by both ranks at the same point
    assert made == [{"backend": "gloo", "timeout": COORDINATION_TIMEOUT}] and dist.get_backend(group) == "gloo"
    # the default group's 10 (NCCL) or 30 (gloo) minutes would abort ranks that wait for a long archive's slowest
    assert COORDINATION_TIMEOUT.total_seconds() >= 12 * 3600
    assert gather_objects([f"r{rank}"], group) == ["r0", "r1"]
    assert broadcast_object(f"from {rank}", group) == "from 0"
    assert gather_objects([rank]) == [0, 1]  # the default group as before


def test_two_ranks_share_one_long_timeout_gloo_group():
    run_on_two_ranks(_rank)


def _leave(rank: int, make_group: bool) -> None:
    import torch.distributed as dist

    group = coordination_group() if make_group else None
    barriers, barrier, destroy = [], dist.barrier, dist.destroy_process_group

    def recorded(*args, **kwargs):
        barriers.append(kwargs.get("group", args[0] if args else None))
        return barrier(*args, **kwargs)

    # the group stays for run_on_two_ranks to destroy; this process ends with the test
    dist.barrier, dist.destroy_process_group = recorded, lambda *a, **k: None
    try:
        destroy_distributed()
    finally:
        dist.barrier, dist.destroy_process_group = barrier, destroy
    # ranks that end at different times wait there without the default group's 10 (NCCL) or 30 (gloo) minute limit;
    # a run that made none leaves through the default group's barrier, making no group at its end
    assert barriers == [group], barriers


def test_leaving_waits_at_the_coordination_groups_barrier():
    run_on_two_ranks(_leave, True)


def test_leaving_without_a_coordination_group_waits_at_the_default_barrier():
    run_on_two_ranks(_leave, False)


def test_without_a_process_group_there_is_none(monkeypatch):
    assert coordination_group() is None
    assert gather_objects([1], None) == [1] and broadcast_object("x", None) == "x"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert local_rank() == 3
    monkeypatch.delenv("LOCAL_RANK")
    assert local_rank() == 0
