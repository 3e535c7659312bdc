"""What the cached part of preprocessing warns of (here: a chest film stored as a negative) is said by every run over
the disk cache, not only by the run that computed the entry: once per run, in the up-front check of a training split
or pretraining's data set where there is one, and never again in the epochs or their data-loading workers; an entry
without warnings, or of an earlier version, says nothing. The warnings lie in a file beside the entry, which is stored
as before for older versions sharing the cache."""

from __future__ import annotations

import json
import logging
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandFlipd, Transform
from test_disk_cache import LOADS, CountingLoad  # the files a pipeline decodes, counted

from unimiss_monai.data import disk_cache
from unimiss_monai.data.cache_warnings import warnings_path
from unimiss_monai.data.disk_cache import DiskCacheDataset, cached_dataset
from unimiss_monai.data.loaders import SeededDataset, make_loader
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


def test_entries_hold_their_own_warnings_beside_them_and_are_stored_as_before(films, tmp_path, monkeypatch, caplog):
    ds = DiskCacheDataset(films, _pipeline(), tmp_path / "cache")
    ds.fill(num_workers=2, progress=False)  # two threads computing at once: each entry keeps its own words
    negative, positive = (ds.entry_path(item) for item in films)
    ((name, level, message),) = json.loads(warnings_path(negative).read_text())
    assert (name, level) == (LOGGER, logging.WARNING) and message.startswith(f"{films[0]['image']}: looks like")
    assert not warnings_path(positive).exists(), "no warnings file for an entry without warnings"
    # an older version reads the entry itself: the item as it always was, not wrapped with its warnings
    assert SAID_TAG not in torch.load(negative, weights_only=True)
    assert set(torch.load(negative, weights_only=True)) == {"image"}

    # a warm check reads the warnings files only, none of the entries
    monkeypatch.setattr(disk_cache.torch, "load", lambda *a, **k: pytest.fail("an entry was read"))
    with caplog.at_level(logging.WARNING):
        _next_run(monkeypatch, caplog)
        DiskCacheDataset(films, _pipeline(), tmp_path / "cache").fill(num_workers=0, progress=False)
    assert _said(caplog) == [message]


def test_an_entry_computed_again_replaces_its_warnings(films, tmp_path, monkeypatch, caplog):
    positive = films[1]
    ds = DiskCacheDataset([positive], _pipeline(), tmp_path / "cache")
    entry = ds.entry_path(positive)
    ds.cached(dict(positive))
    warnings_path(entry).write_text(json.dumps([[LOGGER, logging.WARNING, "an earlier entry's words"]]))
    entry.write_bytes(entry.read_bytes()[:40])  # truncated: read as a miss, computed again, no warnings this time
    with caplog.at_level(logging.WARNING):
        _next_run(monkeypatch, caplog)
        DiskCacheDataset([positive], _pipeline(), tmp_path / "cache").cached(dict(positive))
    assert not warnings_path(entry).exists() and _said(caplog) == []


def test_an_entry_that_held_its_warnings_itself_is_unwrapped_and_says_them(films, tmp_path, monkeypatch, caplog):
    ds = DiskCacheDataset(films[:1], _pipeline(), tmp_path / "cache")
    expected = ds.cached(dict(films[0]))
    entry = ds.entry_path(films[0])
    said = json.loads(warnings_path(entry).read_text())
    torch.save({SAID_TAG: said, "value": torch.load(entry, weights_only=True)}, entry)  # one earlier version's form
    warnings_path(entry).unlink()
    with caplog.at_level(logging.WARNING):
        _next_run(monkeypatch, caplog)
        again = DiskCacheDataset(films[:1], _pipeline(), tmp_path / "cache").cached(dict(films[0]))
    assert _said(caplog) == [said[0][2]] and LOADS == []
    np.testing.assert_array_equal(np.asarray(again["image"]), np.asarray(expected["image"]))


def test_one_file_in_two_caches_holds_its_warning_in_both(films, tmp_path, monkeypatch, caplog):
    # a training and a validation cache of one run share a film: its warning is logged once (per file), and the
    # validation entry must hold it all the same, for an evaluation that later reads only that cache
    negative = films[0]
    head = Compose([CountingLoad("image"), AsGreyRadiographd("image", chest=True)])
    with caplog.at_level(logging.WARNING):
        DiskCacheDataset([negative], _pipeline(), tmp_path / "training").fill(num_workers=0, progress=False)
        DiskCacheDataset([negative], head, tmp_path / "validation").fill(num_workers=0, progress=False)
        (said,) = _said(caplog)

        _next_run(monkeypatch, caplog)
        DiskCacheDataset([negative], head, tmp_path / "validation").fill(num_workers=0, progress=False)
    assert _said(caplog) == [said] and LOADS == []


class _Warns(Transform):
    """A pipeline's cached head that warns of each item's file."""

    def __call__(self, item: dict) -> dict:
        logging.getLogger(WORDS).warning("%s: looks wrong", item["name"])
        return {"x": torch.zeros(2), "name": item["name"]}


WORDS = "unimiss_monai.tests_words"


def test_pretraining_says_each_warning_once_per_run_not_per_worker_and_epoch(tmp_path, monkeypatch):
    # the records of forked data-loading workers reach this file too (their inherited handler)
    log = tmp_path / "log.txt"
    handler = logging.FileHandler(log)
    logging.getLogger(WORDS).addHandler(handler)
    monkeypatch.setattr(logging.getLogger(WORDS), "level", logging.WARNING)
    data = [{"name": "a.nii.gz"}, {"name": "b.nii.gz"}]
    try:
        for run in ("cold", "warm"):
            monkeypatch.setattr(once, "_SAID", {})  # a fresh process over the same cache
            ds = SeededDataset(data, [_Warns()], name="ct", cache_dir=tmp_path / "cache")
            loader = make_loader(ds, batch_size=1, num_workers=2, multiprocessing_context="fork")
            for _epoch in range(3):  # each epoch forks new workers
                assert sorted(n for batch in loader for n in batch["name"]) == ["a.nii.gz", "b.nii.gz"]
            handler.flush()
            assert sorted(log.read_text().splitlines()) == ["a.nii.gz: looks wrong", "b.nii.gz: looks wrong"], run
            log.write_text("")
    finally:
        logging.getLogger(WORDS).removeHandler(handler)
        handler.close()


def test_an_entry_of_an_earlier_version_is_read_as_before_in_silence(films, tmp_path, monkeypatch, caplog):
    ds = DiskCacheDataset(films[:1], _pipeline(), tmp_path / "cache")
    expected = ds.cached(dict(films[0]))
    entry = ds.entry_path(films[0])
    warnings_path(entry).unlink()  # as written before warnings were kept: the entry alone
    with caplog.at_level(logging.WARNING):
        _next_run(monkeypatch, caplog)
        again = DiskCacheDataset(films[:1], _pipeline(), tmp_path / "cache").cached(dict(films[0]))
    assert _said(caplog) == [] and LOADS == []
    np.testing.assert_array_equal(np.asarray(again["image"]), np.asarray(expected["image"]))
    assert dict(again["image"].meta)["filename_or_obj"] == films[0]["image"]
