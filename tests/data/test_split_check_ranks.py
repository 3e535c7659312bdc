"""The check of a training split under ``torchrun``, two gloo ranks on 127.0.0.1: each item is decoded by one rank
only (with the disk cache, its entry stored once and read back by the other rank), a bad item on either rank's share
is named in the one refusal both ranks raise, and only rank 0 shows a progress bar, of its share."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_disk_cache import LOADS  # the files a pipeline decodes, counted per process
from test_training_input_check import AIR, _pipeline, _volumes

from unimiss_monai.data.disk_cache import cached_dataset
from unimiss_monai.data.tolerant import DatalistSplit

sys.path.insert(0, str(Path(__file__).parents[1] / "handlers"))

from gloo_ranks import run_on_two_ranks  # noqa: E402

# a rank stuck at a collective would otherwise wait out the coordination group's 24 hours
pytestmark = pytest.mark.timeout(300)


def _checked(rank: int, mode: str, items: list[dict], tmp_path: Path, progress: bool = False):
    """``cached_dataset`` of ``items`` as a training split on this rank: ``(data set or None, refusal or None)``,
    with the files this rank decoded in ``LOADS``."""
    LOADS.clear()
    try:
        return cached_dataset(DatalistSplit(items, tmp_path / "datalist.json", "training"), _pipeline(), mode,
                              cache_dir=tmp_path / "cache" if mode == "disk" else None, progress=progress), None
    except ValueError as err:
        return None, str(err)


def _passing(rank: int, mode: str, items: list[dict], tmp_path: Path) -> None:
    from unimiss_monai.utils.dist import gather_objects

    dataset, refusal = _checked(rank, mode, items, tmp_path)
    decoded = gather_objects([sorted(LOADS)])  # [rank 0's, rank 1's]: every rank gets both
    assert refusal is None, refusal
    # rank r decodes the items i with i % 2 == r, and no other: each item once across the ranks
    assert decoded == [sorted(it["image"] for it in items[r::2]) for r in (0, 1)], decoded
    if mode == "disk":
        assert len(list((tmp_path / "cache").glob("*.pt"))) == len(items)
        LOADS.clear()
        assert all(dataset[i]["image"].shape == (1, 10, 12, 8) for i in range(len(items)))
        assert LOADS == [], "an epoch over every item reads the entries either rank stored"


@pytest.mark.parametrize("mode", ["disk", "none"])
def test_each_item_is_decoded_by_one_rank(mode, tmp_path):
    run_on_two_ranks(_passing, mode, _volumes(tmp_path, 5), tmp_path)  # shares of 3 and 2


def _refusing(rank: int, mode: str, items: list[dict], tmp_path: Path) -> None:
    from unimiss_monai.utils.dist import gather_objects

    _, refusal = _checked(rank, mode, items, tmp_path)
    refusals, decoded = gather_objects([refusal]), gather_objects(sorted(LOADS))
    assert refusals[0] is not None and refusals[0] == refusals[1], refusals
    assert refusals[0].startswith(f"datalist {tmp_path / 'datalist.json'}: 2 of the 6 items of 'training' cannot be "
                                  "trained on; fix or remove each, then run again: [1] ValueError: "), refusals[0]
    # item 1 is rank 1's, item 4 rank 0's: both named, in datalist order, with the reason the checking rank found
    assert refusals[0].endswith(f"[4] ValueError: {items[4]['image']} {AIR}"), refusals[0]
    assert f"[1] ValueError: {items[1]['image']} {AIR}; [4]" in refusals[0]
    assert sorted(decoded) == sorted(it["image"] for it in items), "each item decoded once, the bad ones included"
    if mode == "disk":  # the good items' entries are kept for the rerun, the bad ones have none
        assert len(list((tmp_path / "cache").glob("*.pt"))) == 4


@pytest.mark.parametrize("mode", ["disk", "none"])
def test_a_bad_item_of_either_share_is_named_by_both_ranks(mode, tmp_path):
    run_on_two_ranks(_refusing, mode, _volumes(tmp_path, 6, bad=(1, 4)), tmp_path)


def _bars(rank: int, items: list[dict], tmp_path: Path) -> None:
    import tqdm

    from unimiss_monai.utils.dist import gather_objects

    bars, real = [], tqdm.tqdm

    def recorded(iterable, **kwargs):
        bars.append((kwargs["total"], kwargs["disable"], kwargs["desc"]))
        return real(iterable, **kwargs)

    tqdm.tqdm = recorded  # this process ends with the test
    _checked(rank, "none", items, tmp_path, progress=True)
    everyone = gather_objects([bars])
    # one bar in the merged output of both ranks: rank 0's, counting its 3 items, saying whose share it counts
    assert everyone == [[(3, False, "Checking dataset (rank 0's share, 1/2)")], [(2, True, everyone[1][0][2])]]


def test_only_rank_zero_shows_a_progress_bar_of_its_share(tmp_path):
    run_on_two_ranks(_bars, _volumes(tmp_path, 5), tmp_path)


def _pooled(rank: int, items: list[dict]) -> None:
    from unimiss_monai.data.split_check import shared_failures
    from unimiss_monai.utils.once import first_time, said

    # a warning said once per file (the both-lungs label's) by whichever rank checks the item
    shared_failures(items, lambda item: first_time("pooled test", item["image"]), progress=False)
    # each rank's data-loading workers later meet items of both shares: each rank knows all of them as said
    assert said("pooled test") == {"pooled test": sorted(it["image"] for it in items)}, (rank, said("pooled test"))


def test_what_each_share_said_once_is_pooled_over_the_ranks(tmp_path):
    run_on_two_ranks(_pooled, [{"image": f"case_{i}.nii.gz"} for i in range(5)])
