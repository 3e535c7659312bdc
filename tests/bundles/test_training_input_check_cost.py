"""The up-front input check of fine-tune training is the cache's own work: with ``--cache memory`` every CT is decoded
once (the cache fill checks it), with ``--cache disk`` a rerun over a warm cache decodes no CT at all, and the bad
inputs are still named together whatever the cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_runner import configs
from monai.bundle import ConfigParser

from unimiss_monai.transforms import LoadCTImaged
from unimiss_monai.utils.errors import root_cause

pytestmark = pytest.mark.integration

BUNDLE, NAME = "unimiss_ct_segmentation", "ct_segmentation"
SECTIONS = {"train": "training", "validate": "validation"}


@pytest.fixture
def data(sample_set, tmp_path) -> Path:
    """A copy of the CT segmentation samples (its files are changed by the tests)."""
    from unimiss_monai.data.samples import find_dataset

    shutil.copytree(find_dataset(sample_set(NAME), NAME), tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The images the bundle's loader decodes, in order."""
    seen: list[str] = []
    original = LoadCTImaged.__call__

    def counting(self, data, *args, **kwargs):
        seen.append(str(data["image"]))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(LoadCTImaged, "__call__", counting)
    return seen


def _dataset(data: Path, tmp_path: Path, section: str, **overrides):
    parser = ConfigParser()
    parser.read_config(configs(BUNDLE, "train.json", "smoke.yaml"))
    parser.update({"bundle_root": str(tmp_path / "root"), "dataset_dir": str(data), **overrides})
    return parser.get_parsed_content(f"{section}#dataset")


def _images(data: Path) -> list[Path]:
    datalist = json.loads((data / "datalist.json").read_text())
    return [data / item["image"] for split in SECTIONS.values() for item in datalist[split]]


def test_the_memory_cache_decodes_each_ct_once(data, loads, tmp_path):
    for section in SECTIONS:
        loads.clear()
        ds = _dataset(data, tmp_path, section)
        assert ds.cache_num == len(ds.data) > 0
        assert sorted(loads) == sorted(str(it["image"]) for it in ds.data), "each CT decoded once: checked as cached"


def test_a_rerun_over_a_warm_disk_cache_decodes_no_ct(data, loads, tmp_path):
    cache = str(tmp_path / "cache")
    for section in SECTIONS:
        _dataset(data, tmp_path, section, cache="disk", cache_dir=cache)
    assert loads, "the first run decodes and stores every CT"
    # every CT becomes unreadable, its size and time kept: only a decode can tell, and the cache's key cannot
    for image in _images(data):
        stat = image.stat()
        image.write_bytes(b"\0" * stat.st_size)
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    loads.clear()
    for section in SECTIONS:
        ds = _dataset(data, tmp_path, section, cache="disk", cache_dir=cache)
        sample = ds[0]  # training crops a list of samples from a case
        assert (sample[0] if isinstance(sample, list) else sample)["image"].ndim == 4
    assert loads == []


@pytest.mark.parametrize("cache", ["disk", "none"])
def test_bad_inputs_are_named_together_with_a_disk_cache_or_none(cache, data, tmp_path):
    datalist = json.loads((data / "datalist.json").read_text())
    items = datalist["training"]
    src = nib.load(data / items[0]["image"])
    air = -1000.0 + np.random.default_rng(0).uniform(-20, 20, src.shape).astype(np.float32)
    for name in ("bad_a", "bad_b"):
        nib.save(nib.Nifti1Image(air, src.affine), data / f"{name}.nii.gz")
    items.insert(1, {**items[0], "image": "bad_a.nii.gz"})
    items.append({**items[0], "image": "bad_b.nii.gz"})
    (data / "datalist.json").write_text(json.dumps(datalist))
    cache_dir = {"cache_dir": str(tmp_path / "cache")} if cache == "disk" else {}
    with pytest.raises(Exception) as err:  # noqa: PT011 - monai.bundle wraps the refusal's ValueError
        _dataset(data, tmp_path, "train", cache=cache, **cache_dir)
    message = str(root_cause(err.value))
    assert message.startswith(f"datalist {data / 'datalist.json'}: 2 of the {len(items)} items of 'training' cannot "
                              "be trained on; fix or remove each, then run again: [1] "), message
    assert f"[{len(items) - 1}] " in message and message.count("holds nothing denser than air") == 2, message
