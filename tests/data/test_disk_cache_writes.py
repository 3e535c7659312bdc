"""Disk cache entries under a shared folder: a final name only ever holds a whole entry, even when ``$TMPDIR`` is on
another file system and the run is killed while writing; an unreadable entry is computed again, never a crash or a
skipped sample; a cache that cannot be written costs only the cache."""

from __future__ import annotations

import errno
import io
import logging
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureTyped, LoadImaged, RandFlipd

from test_disk_cache import LOADS, CountingLoad

from unimiss_monai.data.disk_cache import DiskCacheDataset
from unimiss_monai.data.loaders import SKIPPED_KEY, SeededDataset

class Killed(BaseException):
    """The process dying (kill -9, node lost): nothing after it runs but ``finally`` blocks of the simulation."""


def _pipeline() -> Compose:
    return Compose([CountingLoad("image"), EnsureTyped("image", dtype=torch.float32, track_meta=False),
                    RandFlipd("image", prob=0.5, spatial_axis=0)])


def _volume(tmp_path: Path) -> dict:
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(10, 12, 8)).astype(np.float32), np.eye(4)), str(path))
    return {"image": str(path)}


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.pt"))


def _whole(entry: Path) -> bool:
    try:
        torch.load(entry, weights_only=True)
    except Exception:  # noqa: BLE001 - any failure means a reader would get no entry
        return False
    return True


def _cache_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "unimiss_monai.data.disk_cache" and r.levelno == logging.WARNING]


@pytest.fixture(autouse=True)
def _reset_loads():
    LOADS.clear()


@pytest.fixture
def other_file_system(tmp_path, monkeypatch):
    """``$TMPDIR`` on another file system than the cache: a rename from it fails, so ``shutil.move`` byte-copies into
    the destination; here the copy is killed half way."""
    local = tmp_path / "local_tmp"
    local.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(local))
    real_move = shutil.move

    def move(src, dst, *args, **kwargs):
        if Path(src).is_relative_to(local) and not Path(dst).is_relative_to(local):
            data = Path(src).read_bytes()
            Path(dst).write_bytes(data[: len(data) // 2])
            raise Killed
        return real_move(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "move", move)
    return local


def test_a_run_killed_while_writing_leaves_no_partial_entry_under_a_final_name(tmp_path, monkeypatch, other_file_system):
    item, cache = _volume(tmp_path), tmp_path / "cache"
    real_save = torch.save

    def save_killed_half_way(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if isinstance(f, (str, Path)):
            Path(f).write_bytes(data)
        else:
            f.write(data)
        raise Killed

    with monkeypatch.context() as m:  # killed while the entry is serialised
        m.setattr(torch, "save", save_killed_half_way)
        with pytest.raises(Killed):
            DiskCacheDataset([item], _pipeline(), cache).cached(dict(item))
    assert _entries(cache) == []
    try:  # killed while the entry is moved into the cache folder, if it is moved from elsewhere at all
        DiskCacheDataset([item], _pipeline(), cache).cached(dict(item))
    except Killed:
        pass
    assert all(_whole(e) for e in _entries(cache)), "a truncated entry under its final name"
    assert list(other_file_system.iterdir()) == []
    expected = LoadImaged("image", image_only=True, ensure_channel_first=True)(dict(item))["image"]
    again = DiskCacheDataset([item], _pipeline(), cache).cached(dict(item))["image"]
    assert torch.equal(again, torch.as_tensor(np.asarray(expected), dtype=torch.float32))


def _truncate(entry: Path) -> None:
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])


def test_a_truncated_entry_is_computed_again_and_replaced_with_one_warning_naming_it(tmp_path, caplog):
    item, cache = _volume(tmp_path), tmp_path / "cache"
    good = DiskCacheDataset([item], _pipeline(), cache).cached(dict(item))["image"]
    (entry,) = _entries(cache)
    _truncate(entry)
    LOADS.clear()
    ds = DiskCacheDataset([item], _pipeline(), cache)
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.disk_cache"):
        assert torch.equal(ds.cached(dict(item))["image"], good)
        assert torch.equal(ds.cached(dict(item))["image"], good)
    assert LOADS == [item["image"]]  # decoded once: the replaced entry serves the second read
    assert _entries(cache) == [entry] and _whole(entry)
    warnings = _cache_warnings(caplog)
    assert len(warnings) == 1 and entry.name in warnings[0] and "\n" not in warnings[0]


def test_a_truncated_entry_does_not_skip_a_pretraining_sample(tmp_path):
    item, cache = _volume(tmp_path), tmp_path / "cache"
    first = SeededDataset([item], _pipeline(), name="ct", cache_dir=cache)[(0, 3)]
    (entry,) = _entries(cache / "ct")
    _truncate(entry)
    for seed in (3, 4):  # every later epoch draws the sample
        out = SeededDataset([item], _pipeline(), name="ct", cache_dir=cache)[(0, seed)]
        assert SKIPPED_KEY not in out
    assert torch.equal(SeededDataset([item], _pipeline(), name="ct", cache_dir=cache)[(0, 3)]["image"], first["image"])


def test_a_cache_that_cannot_be_written_costs_only_the_cache(tmp_path, monkeypatch, caplog):
    items = [_volume(tmp_path)]
    second = tmp_path / "ct2.nii.gz"
    shutil.copy(items[0]["image"], second)
    items.append({"image": str(second)})
    cache = tmp_path / "cache"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    ds = DiskCacheDataset(items, _pipeline(), cache)
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.disk_cache"):
        out = [ds.cached(dict(i))["image"] for i in items]
    assert torch.equal(out[0], out[1]) and out[0].shape == (1, 10, 12, 8)
    assert _entries(cache) == [] and list(cache.iterdir()) == []
    warnings = _cache_warnings(caplog)
    assert len(warnings) == 1 and "No space left" in warnings[0]


def test_opening_the_folder_removes_only_old_temporaries_of_killed_writers(tmp_path, monkeypatch):
    import os

    from unimiss_monai.data.disk_cache import LEFTOVER_AGE_S
    from unimiss_monai.data.writers import temporary_beside

    cache = tmp_path / "cache"
    cache.mkdir()
    whole = cache / "0123abcd.pt"
    torch.save({"image": torch.zeros(2)}, whole)
    # as killed writers left them, one beside an entry another process is writing now
    stale = [temporary_beside(cache / "0123abcd.pt"), temporary_beside(cache / "4567ef.pt"),
             temporary_beside(cache / "89ab.pt")]
    fresh = temporary_beside(cache / "89ab.pt")  # that other process's write in progress
    # old files not of the form: the user's, and some close to it
    users = [cache / "notes.txt", cache / ".4567ef.pt.bak", cache / ".4567ef.pt.1.unimiss-tmp.keep", cache / ".hidden",
             cache / ".4567ef.pt.ab.12.unimiss-tmp.x"]
    for f in users:
        f.write_text("mine")
    long_ago = os.stat(whole).st_mtime - 2 * 3600  # writing an entry takes seconds: two hours is no live writer
    for f in [whole, *stale, *users]:
        os.utime(f, (long_ago, long_ago))
    listings, scandir = [], os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": listings.append(Path(path)) or scandir(path))

    DiskCacheDataset([], _pipeline(), cache)
    assert not any(f.exists() for f in stale)
    assert fresh.exists() and whole.exists() and _whole(whole)
    assert all(f.read_text() == "mine" for f in users)
    # once per process and folder: a second data set over it does not list it again
    listings.clear()
    DiskCacheDataset([], _pipeline(), cache)
    assert listings == []
    assert 600 <= LEFTOVER_AGE_S < 2 * 3600  # far beyond one entry's write, short of the files removed here
