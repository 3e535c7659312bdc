"""Two downloads of one release into one cache at once (jobs of a cluster starting together): one fetches, the other
waits and reuses the verified zip; both end with the bundle in place."""

from __future__ import annotations

import threading
import time
from pathlib import Path

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
