"""download: index -> verified zip in the cache -> staged unpack, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from unimiss_monai.release.archive import UnsafeArchiveError
from unimiss_monai.release.download import DownloadError, download
from unimiss_monai.release.index import ReleaseIndexError
from unimiss_monai.release.package import package_bundle

# the pretraining bundle's current version: releases are named after it
PV = json.loads((Path(__file__).resolve().parents[2] / "bundles" / "unimiss_pretraining" / "configs" / "metadata.json").read_text())["version"]

NAME, VERSION = "unimiss_pretraining", PV
ZIP = f"{NAME}_v{VERSION}.zip"


@pytest.fixture(scope="module")
def site(repo_root_module, tiny_export, tmp_path_factory) -> Path:
    """A release folder as package-bundle writes it: the zip, its sha256, model_info.json."""
    out = tmp_path_factory.mktemp("site")
    package_bundle(str(repo_root_module / "bundles" / NAME), weights=str(tiny_export), out=str(out),
                   training="random weights of a test", overlay="smoke.yaml")
    return out


@pytest.fixture(scope="module")
def repo_root_module():
    return Path(__file__).resolve().parents[2]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _index(site: Path, filename: str, **entry) -> None:
    base = json.loads((site / "model_info.json").read_text())[f"{NAME}_v{VERSION}"]
    (site / filename).write_text(json.dumps({entry.pop("key", f"{NAME}_v{VERSION}"): {**base, **entry}}))


def test_download_verifies_unpacks_and_reuses_the_cache(site, serve, tmp_path):
    url = serve(site)
    cache, dest = tmp_path / "cache", tmp_path / "bundles"
    res = download(NAME, index=f"{url}/model_info.json", bundle_dir=str(dest), cache_dir=str(cache), progress=False)
    assert res["state"] == "unpacked" and not res["from_cache"]
    with zipfile.ZipFile(site / ZIP) as zf:
        assert _tree(dest / NAME) == {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}
    assert hashlib.sha256((cache / ZIP).read_bytes()).hexdigest() == res["sha256"]
    assert not list(cache.glob("*.part")) and not list(dest.glob(".*"))
    weights = torch.load(dest / NAME / "models" / "model.pt", weights_only=True)
    assert res["weights"]["tensors"] == len(weights["model"]) and res["weights"]["variant"] == "mitplus"
    # the same release into a second folder comes from the verified cache: the server is not needed any more
    again = download(NAME, version=VERSION, index=f"{url}/model_info.json", bundle_dir=str(tmp_path / "b2"),
                     cache_dir=str(cache), progress=False)
    assert again["from_cache"] and _tree(tmp_path / "b2" / NAME) == _tree(dest / NAME)
    # an existing identical folder is left alone
    assert download(NAME, index=f"{url}/model_info.json", bundle_dir=str(dest), cache_dir=str(cache),
                    progress=False)["state"].startswith("already in place")
    # the served release folder stands for its index, as a local one does
    third = download(NAME, index=f"{url}/", bundle_dir=str(tmp_path / "b3"), cache_dir=str(tmp_path / "c3"),
                     progress=False)
    assert not third["from_cache"] and _tree(tmp_path / "b3" / NAME) == _tree(dest / NAME)


def test_offline_second_download_uses_the_verified_cache(site, serve, tmp_path):
    url = serve(site)
    cache = tmp_path / "cache"
    download(NAME, index=f"{url}/model_info.json", bundle_dir=str(tmp_path / "a"), cache_dir=str(cache), progress=False)
    # nothing listens on this port any more: the index is unreachable
    res = download(NAME, index=f"{url}/gone/model_info.json".replace(url, "http://127.0.0.1:9"), bundle_dir=str(tmp_path / "b"),
                   cache_dir=str(cache), progress=False)
    assert res["from_cache"] and _tree(tmp_path / "b" / NAME) == _tree(tmp_path / "a" / NAME)
    # a cached zip that no longer verifies is not used offline
    (cache / ZIP).write_bytes((cache / ZIP).read_bytes()[:-10])
    with pytest.raises(DownloadError, match="no longer verifies"):
        download(NAME, index="http://127.0.0.1:9/model_info.json", bundle_dir=str(tmp_path / "c"), cache_dir=str(cache),
                 progress=False)
    assert not (tmp_path / "c").exists()


def test_monai_download_url_reads_our_zip(site, serve, tmp_path):
    url = serve(site)
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "download", "--name", NAME, "--url", f"{url}/{ZIP}",
                           "--bundle_dir", str(tmp_path / "monai")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = download(NAME, index=str(site / "model_info.json"), bundle_dir=str(tmp_path / "ours"),
                    cache_dir=str(tmp_path / "cache"), progress=False)
    assert ours["state"] == "unpacked"
    monai_tree = _tree(tmp_path / "monai" / NAME)
    assert monai_tree == _tree(tmp_path / "ours" / NAME) and "models/model.pt" in monai_tree


def _assert_nothing_left(tmp_path: Path, dest: Path, cache: Path) -> None:
    assert _tree(dest) == {"keep.txt": b"mine"}, "the target folder changed"
    assert not cache.exists(), "the cache folder this failed run created was left behind"


@pytest.fixture
def user_folder(tmp_path) -> Path:
    dest = tmp_path / "bundles"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"mine")
    return dest


def test_wrong_hash_is_refused(site, serve, tmp_path, user_folder):
    _index(site, "wrong_hash.json", hash_val="0" * 64)
    url = serve(site)
    with pytest.raises(DownloadError, match="the index says 0000"):
        download(NAME, index=f"{url}/wrong_hash.json", bundle_dir=str(user_folder), cache_dir=str(tmp_path / "cache"),
                 progress=False)
    _assert_nothing_left(tmp_path, user_folder, tmp_path / "cache")


@pytest.mark.parametrize("mode,match", [("truncate", "stopped after"), ("die", "stopped after")])
def test_interrupted_transfer_leaves_nothing(site, serve, tmp_path, user_folder, mode, match):
    _index(site, f"{mode}.json", source=f"{mode}/{ZIP}")
    url = serve(site)
    with pytest.raises(DownloadError, match=match):
        download(NAME, index=f"{url}/{mode}.json", bundle_dir=str(user_folder), cache_dir=str(tmp_path / "cache"),
                 progress=False, timeout=20)
    _assert_nothing_left(tmp_path, user_folder, tmp_path / "cache")


def _hostile_zip(path: Path, bad: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{NAME}/configs/metadata.json", json.dumps({"version": VERSION}))
        if bad == "symlink":
            info = zipfile.ZipInfo(f"{NAME}/configs/link")
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        else:
            zf.writestr(bad, b"escaped")


@pytest.mark.parametrize("bad,match", [
    ("../escaped.txt", "lies outside|contains '..'"),
    (f"{NAME}/../../escaped.txt", "contains '..'"),
    ("/tmp/unimiss_release_test_escaped.txt", "absolute path"),
    ("symlink", "symbolic link"),
    ("other_bundle/configs/x.json", "lies outside the bundle folder"),
])
def test_zip_slip_is_refused(site, serve, tmp_path, user_folder, bad, match):
    hostile = site / f"hostile_{abs(hash(bad))}.zip"
    _hostile_zip(hostile, bad)
    _index(site, "hostile.json", source=hostile.name, hash_val=hashlib.sha256(hostile.read_bytes()).hexdigest(),
           size=hostile.stat().st_size)
    url = serve(site)
    with pytest.raises(UnsafeArchiveError, match=match):
        download(NAME, index=f"{url}/hostile.json", bundle_dir=str(user_folder), cache_dir=str(tmp_path / "cache"),
                 progress=False)
    _assert_nothing_left(tmp_path, user_folder, tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/unimiss_release_test_escaped.txt").exists()


@pytest.mark.parametrize("entry,match", [
    ({"source": "file:///etc/passwd"}, "only http/https sources"),
    ({"key": "unimiss_pretraining_v9.9.9"}, f"describes unimiss_pretraining_v{PV}"),
    ({"hash_val": "abc"}, "has hash_val 'abc', not a sha256"),
    ({"hash_type": "md5"}, "has hash_type 'md5', not sha256"),
    ({"name": "../../etc"}, "not a plain name"),
])
def test_hostile_index_is_refused(site, serve, tmp_path, user_folder, entry, match):
    _index(site, "bad_index.json", **entry)
    url = serve(site)
    key = entry.get("key", f"{NAME}_v{VERSION}")
    version = key.rsplit("_v", 1)[1]
    with pytest.raises(ReleaseIndexError, match=match):
        download(NAME, version=version, index=f"{url}/bad_index.json", bundle_dir=str(user_folder),
                 cache_dir=str(tmp_path / "cache"), progress=False)
    _assert_nothing_left(tmp_path, user_folder, tmp_path / "cache")


def test_an_existing_different_folder_is_kept(site, tmp_path):
    dest, cache = tmp_path / "bundles", str(tmp_path / "cache")
    index = str(site / "model_info.json")
    download(NAME, index=index, bundle_dir=str(dest), cache_dir=cache, progress=False)
    edited = dest / NAME / "configs" / "train.json"
    edited.write_text(edited.read_text().replace("65536", "4096"))
    before = _tree(dest / NAME)
    with pytest.raises(FileExistsError, match=f"differs from unimiss_pretraining v{PV}"):
        download(NAME, index=index, bundle_dir=str(dest), cache_dir=cache, progress=False)
    assert _tree(dest / NAME) == before and sorted(os.listdir(dest)) == [NAME]
    res = download(NAME, index=index, bundle_dir=str(dest), cache_dir=cache, force=True, progress=False)
    assert res["state"].startswith("replaced") and _tree(dest / f"{NAME}.prev") == before
    assert _tree(dest / NAME) != before


def test_a_folder_in_the_cache_where_the_zip_goes_is_refused_in_one_line(site, tmp_path):
    """The cache's zip is replaced in place: a folder of its name stops the download before any transfer, in one line,
    and stays as it was."""
    from unimiss_monai.release.index import entry_key, load_index, resolve

    cache = tmp_path / "cache"
    index = str(site / "model_info.json")
    entry = resolve(*load_index(index), NAME, None, index)
    blocker = cache / f"{entry_key(entry.name, entry.version)}.zip"
    (blocker / "inside").mkdir(parents=True)
    with pytest.raises(FileExistsError, match=rf"^download: the cache file {re.escape(str(blocker))} is a folder, not a file"):
        download(NAME, index=str(site / "model_info.json"), bundle_dir=str(tmp_path / "bundles"), cache_dir=str(cache),
                 progress=False)
    assert sorted(p.name for p in blocker.iterdir()) == ["inside"] and not (tmp_path / "bundles" / NAME).exists()


def _rezip(site: Path, tag: str, version: str = VERSION, metadata: bytes | None = None, nan: bool = False,
           metadata_folder: bool = False) -> str:
    """A copy of the site's release, changed as asked, with an index naming it; returns the index's file name."""
    import io

    with zipfile.ZipFile(site / ZIP) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    meta_name = f"{NAME}/configs/metadata.json"
    meta = json.loads(entries[meta_name])
    entries[meta_name] = metadata if metadata is not None else json.dumps({**meta, "version": version}).encode()
    if nan:
        payload = torch.load(io.BytesIO(entries[f"{NAME}/models/model.pt"]), weights_only=True)
        key = sorted(payload["model"])[0]
        payload["model"][key] = torch.full_like(payload["model"][key], float("nan"))
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        entries[f"{NAME}/models/model.pt"] = buffer.getvalue()
    if metadata_folder:
        del entries[meta_name]
        entries[meta_name + "/"] = b""
    archive = site / f"changed_{tag}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    data = archive.read_bytes()
    (site / f"changed_{tag}.json").write_text(json.dumps({f"{NAME}_v{version}": {
        "name": NAME, "version": version, "source": archive.name, "hash_type": "sha256",
        "hash_val": hashlib.sha256(data).hexdigest(), "size": len(data)}}))
    return f"changed_{tag}.json"


def test_an_index_answering_404_is_an_error_not_offline(site, serve, tmp_path):
    """A wrong index URL is no reason to install whatever the cache holds: only a missing connection is."""
    url = serve(site)
    cache = tmp_path / "cache"
    download(NAME, index=f"{url}/model_info.json", bundle_dir=str(tmp_path / "a"), cache_dir=str(cache), progress=False)
    with pytest.raises(ReleaseIndexError, match=rf"^index {url}/dist/model_info\.json answered HTTP 404 .*check the URL"):
        download(NAME, index=f"{url}/dist/model_info.json", bundle_dir=str(tmp_path / "b"), cache_dir=str(cache),
                 progress=False)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("tag, change, match", [
    ("list", {"metadata": b"[1, 2]"}, "metadata.json holds a JSON list, not an object"),
    ("invalid", {"metadata": b"{not json"}, "metadata.json is not readable JSON"),
    ("folder", {"metadata_folder": True}, "metadata.json is a folder, not a file"),
    ("version", {"metadata": json.dumps({"version": "0.0.1"}).encode()}, "version 0.0.1, the index says"),
])
def test_malformed_metadata_is_one_line_and_leaves_nothing(site, serve, tmp_path, user_folder, tag, change, match):
    """A refused archive is named in one line, and neither unpacked nor kept in the cache."""
    index = _rezip(site, tag, **change)
    url = serve(site)
    with pytest.raises(ValueError, match=match) as err:
        download(NAME, index=f"{url}/{index}", bundle_dir=str(user_folder), cache_dir=str(tmp_path / "cache"),
                 progress=False)
    assert "\n" not in str(err.value) and f"{url}/changed_{tag}.zip" in str(err.value)
    _assert_nothing_left(tmp_path, user_folder, tmp_path / "cache")


def test_non_finite_weights_are_refused_and_never_used_offline(site, serve, tmp_path, user_folder):
    url = serve(site)
    cache = tmp_path / "cache"
    download(NAME, index=f"{url}/model_info.json", bundle_dir=str(tmp_path / "good"), cache_dir=str(cache),
             progress=False)
    index = _rezip(site, "nan", version="9.9.9", nan=True)  # a newer release whose weights hold NaN
    with pytest.raises(ValueError, match=rf"^{url}/changed_nan\.zip: {NAME}/models/model\.pt: tensor \S+ holds NaN or Inf"):
        download(NAME, index=f"{url}/{index}", bundle_dir=str(user_folder), cache_dir=str(cache), progress=False)
    assert _tree(user_folder) == {"keep.txt": b"mine"}
    assert sorted(p.name for p in cache.iterdir()) == [f"{NAME}_v{VERSION}.json", ZIP]
    # offline, the newest verified release is the good one: the refused archive was never recorded
    res = download(NAME, index="http://127.0.0.1:9/model_info.json", bundle_dir=str(tmp_path / "offline"),
                   cache_dir=str(cache), progress=False)
    assert res["from_cache"] and res["version"] == VERSION


def test_staging_folders_of_other_bundles_are_left_alone(site, tmp_path):
    """``unimiss_pretraining.v2`` (another bundle) may be unpacking beside this one: only this bundle's own leftovers
    are removed."""
    dest = tmp_path / "bundles"
    other = dest / f".{NAME}.v2.0a1b2c3d.unimiss-tmp"
    own = dest / f".{NAME}.0a1b2c3d.unimiss-tmp"  # left by a killed download of this bundle
    (other / "configs").mkdir(parents=True)
    (other / "configs" / "metadata.json").write_text("{}")
    own.mkdir()
    download(NAME, index=str(site / "model_info.json"), bundle_dir=str(dest), cache_dir=str(tmp_path / "cache"),
             progress=False)
    assert (other / "configs" / "metadata.json").read_text() == "{}" and not own.exists()
    assert sorted(p.name for p in dest.iterdir()) == [other.name, NAME]


def test_the_index_may_be_the_release_folder(site, tmp_path):
    res = download(NAME, index=str(site), bundle_dir=str(tmp_path / "b"), cache_dir=str(tmp_path / "cache"),
                   progress=False)
    assert res["state"] == "unpacked" and res["version"] == VERSION
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"^index {empty} is a folder without a model_info\.json; pass --index"):
        download(NAME, index=str(empty), bundle_dir=str(tmp_path / "c"), cache_dir=str(tmp_path / "cache"),
                 progress=False)

    for timeout in ("abc", "-5", 0, "inf", None):  # refused even where a local index would never use it
        with pytest.raises(ValueError, match=r"^download: --timeout must be a positive number of seconds"):
            download(NAME, index=str(site), bundle_dir=str(tmp_path / "d"), cache_dir=str(tmp_path / "cache"),
                     progress=False, timeout=timeout)
    assert not (tmp_path / "d").exists()


def test_a_refused_archive_leaves_no_bundle_dir_it_created(site, serve, tmp_path, monkeypatch):
    """--bundle_dir (and its missing parents) is created for the unpack; a refused archive removes again only the
    folders this run created, and only while they are empty."""
    index = _rezip(site, "refused", metadata=json.dumps({"version": "0.0.1"}).encode())
    url = serve(site)
    mine = tmp_path / "mine"
    mine.mkdir()
    dest = mine / "new" / "bundles"
    with pytest.raises(DownloadError, match="the index says"):
        download(NAME, index=f"{url}/{index}", bundle_dir=str(dest), cache_dir=str(tmp_path / "cache"), progress=False)
    assert mine.is_dir() and not list(mine.iterdir())  # the folder that was there stays; the two it made are gone
    # a file that something else put into a folder this run created: that folder, and those holding it, stay
    import unimiss_monai.release.download as download_module

    real = download_module._check_unpacked

    def meanwhile(folder, entry):
        (dest / "notes.txt").write_text("not the run's")
        return real(folder, entry)

    monkeypatch.setattr(download_module, "_check_unpacked", meanwhile)
    with pytest.raises(DownloadError, match="the index says"):
        download(NAME, index=f"{url}/{index}", bundle_dir=str(dest), cache_dir=str(tmp_path / "cache"), progress=False)
    assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == ["new", "new/bundles",
                                                                              "new/bundles/notes.txt"]
