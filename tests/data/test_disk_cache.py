"""The disk cache of deterministic preprocessing: same samples as without it, no second decode (also across runs),
stale entries never served, an existing cache folder never emptied, and a bad file still one line and skipped."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset
from monai.transforms import Compose, EnsureTyped, LoadImaged, MapTransform, RandFlipd, RandSpatialCropd, ScaleIntensityd

from unimiss_monai.data.disk_cache import DiskCacheDataset, cached_dataset
from unimiss_monai.data.loaders import SKIPPED_KEY, SeededDataset

LOADS: list[str] = []


class CountingLoad(MapTransform):
    """LoadImaged that records every file it decodes (deterministic, so it belongs to the cached part)."""

    def __init__(self, keys):
        super().__init__(keys)
        self.load = LoadImaged(keys, image_only=True, ensure_channel_first=True)

    def __call__(self, data):
        LOADS.extend(str(data[k]) for k in self.keys)
        return self.load(data)


def _pipeline(maxv: float = 1.0) -> Compose:
    return Compose([
        CountingLoad("image"),
        ScaleIntensityd("image", minv=0.0, maxv=maxv),
        EnsureTyped("image", dtype=torch.float32, track_meta=False),
        RandSpatialCropd("image", roi_size=(6, 6, 4), random_size=False),
        RandFlipd("image", prob=0.5, spatial_axis=0),
    ])


def _volumes(tmp_path, n: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        path = tmp_path / f"ct{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(size=(10, 12, 8)).astype(np.float32), np.eye(4)), str(path))
        items.append({"image": str(path)})
    return items


@pytest.fixture(autouse=True)
def _reset_loads():
    LOADS.clear()


def test_cached_draws_equal_uncached_draws_and_decode_each_file_once(tmp_path):
    items = _volumes(tmp_path)
    plain = SeededDataset(items, _pipeline(), name="ct")
    cached = SeededDataset(items, _pipeline(), name="ct", cache_dir=tmp_path / "cache")
    draws = [(i, seed) for seed in (1, 2, 3) for i in range(len(items))]  # three "epochs"
    for draw in draws:
        assert torch.equal(plain[draw]["image"], cached[draw]["image"]), draw
    # the plain data set decoded every draw; the cached one each file once
    assert len(LOADS) == len(draws) + len(items)
    assert sorted(set(LOADS)) == sorted(item["image"] for item in items)


def test_a_second_run_reads_the_cache_and_keeps_what_else_is_in_the_folder(tmp_path):
    items = _volumes(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "notes.txt").write_text("mine")
    first = SeededDataset(items, _pipeline(), name="ct", cache_dir=cache)
    expected = [first[(i, 7)]["image"] for i in range(len(items))]
    LOADS.clear()
    second = SeededDataset(items, _pipeline(), name="ct", cache_dir=cache)  # a new run over the same folder
    assert all(torch.equal(second[(i, 7)]["image"], expected[i]) for i in range(len(items)))
    assert LOADS == []
    assert (cache / "notes.txt").read_text() == "mine"
    assert len(list((cache / "ct").glob("*.pt"))) == len(items)


def test_a_file_rewritten_in_place_is_decoded_again(tmp_path):
    items = _volumes(tmp_path, 1)
    ds = DiskCacheDataset(items, _pipeline(maxv=1.0), tmp_path / "cache")
    before = ds.cached(dict(items[0]))["image"]
    nib.save(nib.Nifti1Image(np.zeros((10, 12, 8), np.float32), np.eye(4)), items[0]["image"])
    after = DiskCacheDataset(items, _pipeline(maxv=1.0), tmp_path / "cache").cached(dict(items[0]))["image"]
    assert float(before.abs().sum()) > 0 and float(after.abs().sum()) == 0.0


def test_changed_preprocessing_gets_new_entries(tmp_path):
    items = _volumes(tmp_path, 1)
    one = DiskCacheDataset(items, _pipeline(maxv=1.0), tmp_path / "cache").cached(dict(items[0]))["image"]
    two = DiskCacheDataset(items, _pipeline(maxv=2.0), tmp_path / "cache").cached(dict(items[0]))["image"]
    assert torch.allclose(two, 2 * one)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_a_corrupt_file_is_skipped_with_one_line_naming_it(tmp_path, caplog):
    items = _volumes(tmp_path, 2)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    ds = SeededDataset([*items, {"image": str(bad)}], _pipeline(), name="ct", cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        out = ds[(2, 0)]
    assert SKIPPED_KEY in out and "broken.nii.gz" in out[SKIPPED_KEY]
    assert "\n" not in out[SKIPPED_KEY]
    assert "image" in ds[(0, 0)]


def test_cached_dataset_modes(tmp_path):
    items = _volumes(tmp_path, 2)
    assert isinstance(cached_dataset(items, _pipeline(), "memory", num_workers=0), CacheDataset)
    disk = cached_dataset(items, _pipeline(), "disk", cache_dir=tmp_path / "c")
    assert isinstance(disk, DiskCacheDataset) and disk[0]["image"].shape == (1, 6, 6, 4)
    none = cached_dataset(items, _pipeline(), "none")
    assert type(none) is Dataset
    with pytest.raises(ValueError, match="cache_dir"):
        cached_dataset(items, _pipeline(), "disk")
    with pytest.raises(ValueError, match="memory, disk, none"):
        cached_dataset(items, _pipeline(), "ram")
    for mode in ("memory", "none"):  # a cache folder that would never be written is refused, not ignored
        with pytest.raises(ValueError, match="add --cache disk, or drop --cache_dir"):
            cached_dataset(items, _pipeline(), mode, cache_dir=tmp_path / "c")


def test_a_file_where_the_cache_folder_goes_is_one_line(tmp_path):
    (tmp_path / "cache").write_text("mine")
    with pytest.raises(ValueError, match="a file stands where the disk cache folder goes") as err:
        DiskCacheDataset(_volumes(tmp_path, 1), _pipeline(), tmp_path / "cache")
    assert "\n" not in str(err.value) and (tmp_path / "cache").read_text() == "mine"
    with pytest.raises(ValueError, match=f"{tmp_path / 'cache'}: a file stands"):  # pretraining's cache_dir/ct
        SeededDataset(_volumes(tmp_path, 1), _pipeline(), name="ct", cache_dir=tmp_path / "cache")


def test_an_entry_keeps_the_affine_and_plain_metadata_of_a_metatensor(tmp_path):
    from monai.data import MetaTensor

    from unimiss_monai.data.disk_cache import restored, storable

    affine = torch.tensor([[-0.8, 0, 0, 10], [0, -0.8, 0, 20], [0, 0, 2.5, 30], [0, 0, 0, 1]], dtype=torch.float64)
    meta = {"affine": affine, "spatial_shape": np.array([4, 5, 6]), "pixdim": np.float32(0.8), "space": "LPS",
            "filename_or_obj": "ct.nii.gz", "reader": object()}  # an object torch.load(weights_only) refuses
    item = {"image": MetaTensor(torch.rand(1, 4, 5, 6), meta=meta), "name": "ct", "views": [torch.ones(2)]}
    path = tmp_path / "entry.pt"
    torch.save(storable(item), path)
    back = restored(torch.load(path, weights_only=True))
    assert isinstance(back["image"], MetaTensor) and torch.equal(back["image"].as_tensor(), item["image"].as_tensor())
    assert torch.equal(back["image"].affine, affine) and back["image"].meta["space"] == "LPS"
    assert back["image"].meta["spatial_shape"].tolist() == [4, 5, 6] and "reader" not in back["image"].meta
    assert back["name"] == "ct" and torch.equal(back["views"][0], torch.ones(2))


def test_new_data_keeps_the_cache_folder(tmp_path):
    items = _volumes(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "notes.txt").write_text("mine")
    ds = DiskCacheDataset(items[:2], _pipeline(), cache)
    first = ds.cached(dict(items[0]))["image"]
    ds.set_data(items[1:])
    assert (cache / "notes.txt").read_text() == "mine"
    assert len(ds) == 2
    LOADS.clear()
    assert torch.equal(ds.cached(dict(items[0]))["image"], first) and LOADS == []  # still served from the cache
