"""A training data set checked before any work (``cached_dataset`` of a ``DatalistSplit``): every item that fails its
loading and checks is named in one error, whatever the cache; and the check is the cache's own work, so no image is
decoded twice: the memory cache is filled once, a warm disk cache decodes nothing, and only an uncached item (no cache,
``cache_rate < 1``) runs its loading once for the check and again in its epoch."""

from __future__ import annotations

import logging
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset
from monai.transforms import Compose, EnsureTyped, MapTransform, RandFlipd, ScaleIntensityd
from test_disk_cache import LOADS, CountingLoad  # the files a pipeline decodes, counted

from unimiss_monai.data.disk_cache import CheckedCacheDataset, DiskCacheDataset, cached_dataset
from unimiss_monai.data.tolerant import DatalistSplit
from unimiss_monai.utils.errors import root_cause

#: what the input check of the pipeline below says of a bad case
AIR = "holds nothing but air: replace it with the CT"


class RefuseAir(MapTransform):
    """An input check as the bundles' are: a volume of constant value is refused, naming the file and the fix."""

    def __call__(self, data):
        if float(data["image"].std()) == 0:
            raise ValueError(f"{data['image'].meta['filename_or_obj']} {AIR}")
        return data


def _pipeline() -> Compose:
    return Compose([
        CountingLoad("image"), RefuseAir("image"), ScaleIntensityd("image"),
        EnsureTyped("image", dtype=torch.float32, track_meta=False), RandFlipd("image", prob=0.5, spatial_axis=0),
    ])


def _volumes(tmp_path, n: int, bad: tuple[int, ...] = ()) -> list[dict]:
    """``n`` small CTs; those at ``bad`` are of constant value (refused by :class:`RefuseAir`)."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        path = tmp_path / f"ct{i}.nii.gz"
        volume = np.zeros((10, 12, 8), np.float32) if i in bad else rng.normal(size=(10, 12, 8)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
        items.append({"image": str(path)})
    return items


@pytest.fixture(autouse=True)
def _reset_loads():
    LOADS.clear()


def _checked(items, mode: str, tmp_path, **kw):
    cache_dir = tmp_path / "cache" if mode == "disk" else None
    return cached_dataset(DatalistSplit(items, tmp_path / "datalist.json", "training"), _pipeline(), mode,
                          cache_dir=cache_dir, progress=False, **{"num_workers": 0, **kw})


@pytest.mark.parametrize("mode, kw", [("memory", {}), ("memory", {"cache_rate": 0.5}), ("memory", {"num_workers": 2}),
                                      ("disk", {}), ("disk", {"num_workers": 2}), ("none", {}),
                                      ("none", {"num_workers": 3})])
def test_every_failing_item_is_named_in_one_error_whatever_the_cache(mode, kw, tmp_path):
    items = _volumes(tmp_path, 6, bad=(1, 4))  # with cache_rate 0.5, item 4 lies outside the cached part
    with pytest.raises(ValueError) as err:
        _checked(items, mode, tmp_path, **kw)
    message = str(err.value)
    assert message.startswith(f"datalist {tmp_path / 'datalist.json'}: 2 of the 6 items of 'training' cannot be "
                              "trained on; fix or remove each, then run again: [1] "), message
    # each reason as TolerantDataset words it: the error's type where the package did not raise it, then its words
    named = re.findall(r"\[(\d+)\] ValueError: (\S+) " + re.escape(AIR), message)
    assert named == [("1", items[1]["image"]), ("4", items[4]["image"])], message
    assert "\n" not in message
    assert sorted(LOADS) == sorted(it["image"] for it in items), "each item is loaded once, the bad ones included"


def test_beyond_five_failing_items_the_rest_are_counted_and_each_logged(tmp_path, caplog):
    items = _volumes(tmp_path, 8, bad=(0, 1, 2, 3, 5, 6, 7))
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError) as err:
        _checked(items, "memory", tmp_path)
    message = str(err.value)
    assert re.findall(r"\[(\d+)\] ", message) == ["0", "1", "2", "3", "5"]
    assert message.endswith("; and 2 more (each logged above)"), message
    assert {r.getMessage().split(" failed: ")[0] for r in caplog.records if " failed: " in r.getMessage()} == {
        f"case {items[i]['image']}" for i in (0, 1, 2, 3, 5, 6, 7)}


@pytest.mark.parametrize("cache_rate", [1.0, 0.5, 0.0])
def test_the_memory_cache_loads_each_item_once(cache_rate, tmp_path):
    items = _volumes(tmp_path, 4)
    ds = _checked(items, "memory", tmp_path, cache_rate=cache_rate)
    assert isinstance(ds, CheckedCacheDataset) and isinstance(ds, CacheDataset)
    assert sorted(LOADS) == sorted(it["image"] for it in items)
    LOADS.clear()
    assert all(ds[i]["image"].shape == (1, 10, 12, 8) for i in range(len(ds)))
    # an epoch reads the cached part from memory: only the items beyond it are loaded again
    assert sorted(LOADS) == sorted(it["image"] for it in items[ds.cache_num:])


def test_a_warm_disk_cache_decodes_no_raw_file(tmp_path):
    items = _volumes(tmp_path, 3)
    first = _checked(items, "disk", tmp_path)
    assert isinstance(first, DiskCacheDataset) and sorted(LOADS) == sorted(it["image"] for it in items)
    LOADS.clear()
    assert all(first[i]["image"].shape == (1, 10, 12, 8) for i in range(len(first)))
    assert LOADS == [], "the first epoch reads the entries the check stored"
    again = _checked(items, "disk", tmp_path)
    assert LOADS == [], "a rerun over a warm cache checks its items without decoding them"
    assert all(again[i]["image"].shape == (1, 10, 12, 8) for i in range(len(again)))
    assert LOADS == []


def test_a_failing_item_has_no_disk_entry_and_is_named_again_on_a_rerun(tmp_path):
    items = _volumes(tmp_path, 3, bad=(2,))
    for _ in range(2):
        LOADS.clear()
        # one bad item: its own line, as a training run with one bad input says it
        with pytest.raises(ValueError, match=r"ct2\.nii\.gz holds nothing but air"):
            _checked(items, "disk", tmp_path)
    assert LOADS == [items[2]["image"]], "the good items come from the cache, the bad one is checked again"
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_without_a_cache_each_item_is_checked_once_and_a_plain_list_not_at_all(tmp_path):
    items = _volumes(tmp_path, 3, bad=(1,))
    # a plain list (MONAI Label passes its own items) names no datalist to refer to: left to fail in its epoch
    plain = cached_dataset(items, _pipeline(), "none")
    assert type(plain) is Dataset and LOADS == []
    assert type(cached_dataset(items[:1], _pipeline(), "memory", progress=False)) is CacheDataset
    LOADS.clear()
    ds = _checked(_volumes(tmp_path, 3), "none", tmp_path)  # the same files, all good now
    assert type(ds) is Dataset and sorted(LOADS) == sorted(it["image"] for it in items)


def test_a_memory_cache_outside_its_fill_lets_a_failure_through(tmp_path):
    # a failure after the fill (an item loaded at run time) is the item's error, never a None passed on as an item
    items = _volumes(tmp_path, 2)
    ds = _checked(items, "memory", tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 8), np.float32), np.eye(4)), items[0]["image"])
    with pytest.raises(RuntimeError) as err:
        ds._load_cache_item(0)
    assert AIR in str(root_cause(err.value))
