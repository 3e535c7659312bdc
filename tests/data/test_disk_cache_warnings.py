"""What the cached part of preprocessing warns of (here: a chest film stored as a negative) is said by every run over
the disk cache, not only by the run that computed the entry: once per run, in the up-front check of a training split
where there is one, and never again in the epochs; an entry without warnings, or of an earlier version, says
nothing."""

from __future__ import annotations

import logging
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandFlipd
from test_disk_cache import LOADS, CountingLoad  # the files a pipeline decodes, counted

from unimiss_monai.data.disk_cache import DiskCacheDataset, cached_dataset
from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.data.tolerant import DatalistSplit
from unimiss_monai.data.writers import save_png
from unimiss_monai.drr import render, to_radiograph
from unimiss_monai.transforms import AsGreyRadiographd
from unimiss_monai.utils import once
from unimiss_monai.utils.logged_warnings import SAID_TAG

LOGGER = "unimiss_monai.data.radiograph_polarity"


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> list[dict]:
    """Items of a chest film stored as a negative and of one stored as it should be (a phantom's AP DRR)."""
    ph = make_ct_phantom(shape=(40, 40, 32), spacing=(10.0, 10.0, 11.0), seed=0)
    drr = to_radiograph(render(ph.hu, ph.affine, views=["AP"], detector_shape=(64, 64), pixel_spacing=7.0)[0], bits=8)
    folder = tmp_path_factory.mktemp("films")
    save_png(255 - drr, folder / "negative.png")
    save_png(drr, folder / "positive.png")
    return [{"image": str(folder / "negative.png")}, {"image": str(folder / "positive.png")}]


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch):
    """What this process said so far: none of the other tests' words."""
    monkeypatch.setattr(once, "_SAID", {})
    LOADS.clear()


def _pipeline() -> Compose:
    # a chest bundle's head: the file read, brought to grey and checked (the warning), then a random step
    return Compose([CountingLoad("image"), AsGreyRadiographd("image", chest=True),
                    RandFlipd("image", prob=0.5, spatial_axis=0)])


def _said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def _next_run(monkeypatch, caplog) -> None:
    """A fresh process over the same cache folder: nothing said yet, nothing logged yet."""
    monkeypatch.setattr(once, "_SAID", {})
    caplog.clear()
    LOADS.clear()


def test_a_later_run_says_a_cached_entrys_warning_once_and_a_clean_entry_nothing(films, tmp_path, monkeypatch, caplog):
    negative, positive = films
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        first = DiskCacheDataset([negative, positive], _pipeline(), cache)
        first[0], first[1]
        (said,) = _said(caplog)  # the run that computes the entries says it, live
        assert said.startswith(f"{negative['image']}: looks like a negative")

        _next_run(monkeypatch, caplog)
        later = DiskCacheDataset([negative, positive], _pipeline(), cache)
        later[1]
        assert _said(caplog) == [], "a hit of an entry without warnings says nothing"
        for _ in range(3):  # epochs
            later[0]
        assert _said(caplog) == [said], "the entry's warning, said once through its own logger"
    assert LOADS == [], "read from the cache, not computed again"


def test_a_warm_cache_says_it_in_the_training_check_and_not_again_in_the_epochs(films, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    split = DatalistSplit(films, tmp_path / "datalist.json", "training")
    with caplog.at_level(logging.WARNING):
        cached_dataset(split, _pipeline(), cache="disk", cache_dir=cache, num_workers=2, progress=False)
        (said,) = _said(caplog)

        _next_run(monkeypatch, caplog)
        ds = cached_dataset(split, _pipeline(), cache="disk", cache_dir=cache, num_workers=2, progress=False)
        assert _said(caplog) == [said], "said up front, before any epoch"
        assert LOADS == [], "the check of a warm cache decodes nothing"
        for _ in range(2):
            [ds[i] for i in range(len(ds))]
        # a data-loading worker started by spawn receives what the run said with its data set
        sent = ForkingPickler.dumps(ds)
        monkeypatch.setattr(once, "_SAID", {})  # the worker's own, fresh module
        pickle.loads(sent)[0]
    assert _said(caplog) == [said]


def test_entries_hold_their_own_warnings_as_plain_strings(films, tmp_path):
    ds = DiskCacheDataset(films, _pipeline(), tmp_path / "cache")
    ds.fill(num_workers=2, progress=False)  # two threads computing at once: each entry keeps its own words
    negative, positive = (torch.load(ds.entry_path(item), weights_only=True) for item in films)
    ((name, level, message),) = negative[SAID_TAG]
    assert (name, level) == (LOGGER, logging.WARNING) and message.startswith(f"{films[0]['image']}: looks like")
    assert SAID_TAG not in positive, "an entry without warnings is stored as entries always were"


def test_an_entry_of_an_earlier_version_is_read_as_before_in_silence(films, tmp_path, monkeypatch, caplog):
    ds = DiskCacheDataset(films[:1], _pipeline(), tmp_path / "cache")
    expected = ds.cached(dict(films[0]))
    entry = ds.entry_path(films[0])
    torch.save(torch.load(entry, weights_only=True)["value"], entry)  # as written before warnings were kept
    with caplog.at_level(logging.WARNING):
        _next_run(monkeypatch, caplog)
        again = DiskCacheDataset(films[:1], _pipeline(), tmp_path / "cache").cached(dict(films[0]))
    assert _said(caplog) == [] and LOADS == []
    np.testing.assert_array_equal(np.asarray(again["image"]), np.asarray(expected["image"]))
    assert dict(again["image"].meta)["filename_or_obj"] == films[0]["image"]
