"""Two downloads of one release into one cache at once (jobs of a cluster starting together): one fetches, the other
waits and reuses the verified zip; both end with the bundle in place."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import unimiss_monai.release.download as download_module
from unimiss_monai.release.package import package_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unimiss_drr_generation"


def test_concurrent_downloads_share_one_fetch(tmp_path, monkeypatch):
    site = tmp_path / "site"
    package_bundle(str(BUNDLE), out=str(site))
    real_fetch, fetched = download_module.fetch, []

    def slow_fetch(*args, **kwargs):
        fetched.append(args[0].url)
        time.sleep(0.5)  # long enough for the other download to reach the cache
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(download_module, "fetch", slow_fetch)
    results, errors = [], []

    def run():
        try:
            results.append(download_module.download("unimiss_drr_generation", index=str(site / "model_info.json"),
                                                    bundle_dir=str(tmp_path / "bundles"),
                                                    cache_dir=str(tmp_path / "cache"), progress=False))
        except Exception as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(fetched) == 1
    assert sorted(r["state"] for r in results) == ["already in place, unchanged", "unpacked"]
    assert (tmp_path / "bundles" / "unimiss_drr_generation" / "configs" / "metadata.json").is_file()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".json")) == [
        next(p.name for p in site.glob("*.zip"))]


def test_a_failed_first_download_hands_the_waiting_one_a_live_cache_folder(tmp_path):
    """The first download of a new cache fails and removes the folder it made; the one waiting for the lock must then
    hold its lock on the folder at that path, not on the removed one (a third would lock the new folder meanwhile,
    and the two would write the same files)."""
    import fcntl
    import os

    from unimiss_monai.release.cache_folder import cache_lock

    cache = tmp_path / "new" / "cache"
    first_locked, second_waits, seen = threading.Event(), threading.Event(), {}

    def first():
        try:
            with cache_lock(cache):
                first_locked.set()
                second_waits.wait(5)
                time.sleep(0.3)  # the second is blocked on the lock by now
                raise OSError("the fetch failed")
        except OSError:
            pass

    def second():
        first_locked.wait(5)
        second_waits.set()
        with cache_lock(cache):
            time.sleep(0.3)  # the first's clean-up is over by now, whenever it ran
            seen["exists"] = cache.is_dir()
            if seen["exists"]:
                fd = os.open(cache, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    seen["held"] = False
                except BlockingIOError:
                    seen["held"] = True
                finally:
                    os.close(fd)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert seen == {"exists": True, "held": True}
    assert cache.is_dir()  # the second's run succeeded: its folder stays


def test_a_failed_download_removes_only_the_cache_folders_it_made(tmp_path):
    from unimiss_monai.release.cache_folder import cache_lock

    def fail(cache):
        try:
            with cache_lock(cache):
                raise OSError("the fetch failed")
        except OSError:
            pass

    fail(tmp_path / "a" / "cache")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()
    fail(tmp_path / "mine")  # an empty cache folder of the user's stays
    assert (tmp_path / "mine").is_dir()


def test_a_cache_folder_removed_before_it_is_locked_is_made_again_and_locked(tmp_path, monkeypatch):
    """Between making the folder and opening it to lock, a failed download's clean-up may remove it: the body must
    still run locked, in the folder at that path (it ran unlocked, with no cache folder)."""
    import fcntl
    import os

    import unimiss_monai.release.cache_folder as cache_folder

    cache, real_make, calls = tmp_path / "p" / "cache", cache_folder._make, []

    def make_then_lose(folder):
        made = real_make(folder)
        calls.append(made)
        if len(calls) == 1:  # the other download's clean-up, right after this one made the folders
            folder.rmdir()
            folder.parent.rmdir()
        return made

    monkeypatch.setattr(cache_folder, "_make", make_then_lose)
    with cache_folder.cache_lock(cache):
        fd = os.open(cache, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert len(calls) == 2 and cache.is_dir()
