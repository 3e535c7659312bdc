"""``download``: fetch a released bundle by name and version, verify it, and unpack it where nothing half-done is ever
left in place.

The steps, each of which can stop the command with one line and the target folder as it was:

1. the index (``--index`` file or URL, or ``$UNIMISS_MONAI_INDEX``) names the zip's URL and sha256 (:mod:`.index`);
   when it cannot be reached, a zip verified by an earlier download is used from the cache;
2. the zip streams to ``<cache>/<name>_v<version>.zip.part`` with a progress bar; a short read, a dropped connection
   or a wrong sha256 deletes the part file; the entries are checked (:func:`.archive.check_members`) before the file
   is renamed into the cache;
3. it is unpacked into a hidden staging folder beside the target, its ``metadata.json`` version and its weights
   (read with ``weights_only=True``, every tensor finite) are checked there, and only then is the folder renamed into
   place. A folder of the same name with other content is never replaced without ``--force`` (it is then kept as
   ``<name>.prev``). An archive refused here is removed from the cache; one that passes is recorded there
   (``<name>_v<version>.json``), and only recorded archives are used offline: the cache holds only verified archives.

A kill at any point leaves at most a ``.part`` file, an unrecorded zip (verified again before use) or a hidden staging
folder, all removed or replaced by the next run.
Downloads that share a cache run steps 2 and 3 one at a time (a lock on the cache folder), so jobs started together
fetch a release once.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unimiss_monai.data.temporaries import held_temporary
from unimiss_monai.data.writers import check_output_file, remove_leftovers, save_json
from unimiss_monai.release.archive import UnsafeArchiveError, check_members, extract_checked, sha256_file
from unimiss_monai.release.cache_folder import cache_lock, made_folder
from unimiss_monai.release.index import (
    OFFLINE_ERRORS, ReleaseEntry, ReleaseIndexError, check_name, check_version, entry_key, load_index, resolve,
    version_key,
)
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.serialization import load_torch_file

__all__ = ["DownloadError", "INDEX_ENV", "CACHE_ENV", "default_cache_dir", "download", "fetch"]

INDEX_ENV = "UNIMISS_MONAI_INDEX"
CACHE_ENV = "UNIMISS_MONAI_CACHE"
_CHUNK = 1 << 16
_MAX_DOWNLOAD = 64 << 30


class DownloadError(ValueError):
    """A download that did not complete or did not verify; nothing was unpacked."""


def default_cache_dir() -> Path:
    """``$UNIMISS_MONAI_CACHE``, else ``$XDG_CACHE_HOME/unimiss_monai``, else ``~/.cache/unimiss_monai``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "unimiss_monai"


def _open(url: str, timeout: float):
    """``(stream, announced length or None)`` for an ``http(s)`` or ``file`` URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        return open(path, "rb"), path.stat().st_size
    resp = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) only, checked by the index reader
    length = resp.headers.get("Content-Length")
    return resp, (int(length) if length and length.isdigit() else None)


def fetch(entry: ReleaseEntry, dest: Path, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``entry.url`` to ``dest`` through ``dest.part``; ``dest`` appears only once the bytes hash to
    ``entry.sha256`` and every zip entry is safe to unpack.

    Raises:
        DownloadError (one line): unreachable URL, HTTP error, short or over-long transfer, sha256 mismatch.
        UnsafeArchiveError: the verified archive holds entries outside ``<name>/``, links, or is not the bundle.
    """
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    received, digest = 0, hashlib.sha256()
    limit = entry.size or _MAX_DOWNLOAD
    try:
        try:
            stream, length = _open(entry.url, timeout)
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(f"cannot download {entry.url} ({err}); check the address or the network") from None
        expected = length or entry.size
        if entry.size and length and length != entry.size:
            stream.close()
            raise DownloadError(f"{entry.url} is {length} bytes, the index says {entry.size}; not the indexed release")
        try:
            with stream, open(part, "wb") as out, tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                                                       desc=dest.name, disable=not progress, leave=False) as bar:
                while True:  # ends at EOF, on a socket timeout, or when more than the expected bytes arrive
                    chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > limit:
                        raise DownloadError(f"{entry.url} sends more than the {limit} bytes the index announces")
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(f"download of {entry.url} stopped after {received} of {expected or '?'} bytes "
                                f"({type(err).__name__}: {err}); run the command again") from None
        if expected is not None and received != expected:
            raise DownloadError(f"download of {entry.url} stopped after {received} of {expected} bytes (the server "
                                "closed the connection); run the command again")
        if digest.hexdigest() != entry.sha256:
            raise DownloadError(f"sha256 of {entry.url} is {digest.hexdigest()}, the index says {entry.sha256}: the "
                                "file is damaged or not the release; nothing was unpacked")
        try:
            with zipfile.ZipFile(part) as zf:
                check_members(zf, entry.name, received)
        except zipfile.BadZipFile as err:
            raise DownloadError(f"{entry.url} is not a zip archive ({err})") from None
        except UnsafeArchiveError as err:
            raise UnsafeArchiveError(f"{entry.url}: {err}") from None
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _record_path(cache: Path, name: str, version: str) -> Path:
    return cache / f"{entry_key(name, version)}.json"


def _cached_entry(cache: Path, name: str, version: str | None) -> ReleaseEntry | None:
    """The newest (or the given) version of ``name`` that an earlier run verified into the cache."""
    records = sorted(cache.glob(f"{name}_v*.json"), key=lambda p: version_key(p.stem[len(name) + 2:]))
    for path in reversed(records):
        try:
            rec = json.loads(path.read_text())
            entry = ReleaseEntry(check_name(rec["name"]), check_version(rec["version"]), rec["url"], rec["sha256"], rec.get("size"))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if entry.name == name and (version is None or entry.version == version):
            return entry
    return None


def _same_tree(a: Path, b: Path) -> bool:
    def files(root: Path) -> dict[str, Path]:
        return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() or p.is_symlink()}

    fa, fb = files(a), files(b)
    return fa.keys() == fb.keys() and all(
        not fb[k].is_symlink() and fa[k].stat().st_size == fb[k].stat().st_size and sha256_file(fa[k]) == sha256_file(fb[k])
        for k in fa
    )


def _check_unpacked(folder: Path, entry: ReleaseEntry) -> dict[str, Any]:
    """Check the staged bundle: its metadata is a JSON object of the indexed version; its weights load with
    ``weights_only`` and are finite."""
    member = f"{entry.name}/configs/metadata.json"
    try:
        meta = json.loads((folder / "configs" / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DownloadError(f"{entry.url}: {member} is not readable JSON ({err}); the archive is no valid release of "
                            f"{entry.name} (ask its publisher for a fixed one)") from None
    if not isinstance(meta, dict):
        raise DownloadError(f"{entry.url}: {member} holds a JSON {type(meta).__name__}, not an object; the archive is "
                            f"no valid release of {entry.name} (ask its publisher for a fixed one)")
    if str(meta.get("version")) != entry.version:
        raise DownloadError(f"{entry.url} holds {entry.name} version {meta.get('version')}, the index says "
                            f"{entry.version}; the index is wrong")
    # models/model.pt, or where the configs with the release's overlays read it (smoke.yaml: models/smoke/model.pt);
    # the configs are not evaluated here, so the weights are found by name and checked against what they record
    found = sorted(p.relative_to(folder).as_posix() for p in folder.glob("models/**/model.pt") if p.is_file())
    if not found:
        return {}
    if len(found) > 1:  # which one a run reads depends on its configs: no guess
        raise DownloadError(f"{entry.url}: {entry.name} holds {len(found)} weights files ({', '.join(found)}), where "
                            "a release holds one; ask its publisher for a fixed one")
    rel = found[0]
    obj = load_torch_file(folder / rel, f"{entry.name} v{entry.version}: weights")
    model = obj.get("model") if isinstance(obj, Mapping) else None
    if not isinstance(model, Mapping) or not model:
        raise DownloadError(f"{entry.url}: {entry.name}/{rel} holds no 'model' state dict")
    bad = first_non_finite(model)
    if bad is not None:
        raise DownloadError(f"{entry.url}: {entry.name}/{rel}: tensor {bad} holds NaN or Inf; these weights "
                            "are unusable, nothing was unpacked (ask the publisher for a fixed release)")
    info = dict(obj["info"]) if isinstance(obj.get("info"), Mapping) else {}
    overlays = info.get("overlays")
    overlays = [str(o) for o in overlays] if isinstance(overlays, (list, tuple)) else []
    recorded = info.get("weights_path")  # package-bundle records it with overlays; earlier releases did not
    if recorded is not None and recorded != rel:
        raise DownloadError(f"{entry.url}: {entry.name}/{rel} records its place as {recorded}, where the configs with "
                            f"{' + '.join(overlays) or 'no overlay'} read it; the release is inconsistent (ask its "
                            "publisher for a fixed one)")
    return {"tensors": len(model), "variant": info.get("variant"), "training": info.get("training"),
            "overlays": overlays, "path": rel, "placed": recorded is not None or not overlays}


def _run_hint(target: Path, weights: Mapping[str, Any]) -> str:
    """The inference options for weights packaged with overlays (after ``inference.json``), with ``--ckpt_dir`` where
    an earlier package-bundle left them in ``models/`` (the overlays may read another folder); else empty."""
    if not weights.get("overlays") or not (target / "configs" / "inference.json").is_file():
        return ""
    configs = ",".join(f"'{(target / f).as_posix()}'" for f in ["configs/inference.json", *weights["overlays"]])
    ckpt = "" if weights.get("placed") else f" --ckpt_dir {(target / weights['path']).parent.as_posix()}"
    return (f"; run it with --config_file \"[{configs}]\" --meta_file {(target / 'configs/metadata.json').as_posix()} "
            f"--bundle_root {target.as_posix()}{ckpt}")


def _unpack(zip_path: Path, entry: ReleaseEntry, staging: Path, cache: Path) -> tuple[Path, dict]:
    """Unpack and check the archive in ``staging``. A refused archive is removed from the cache with its record, so
    it is neither used offline nor reused; one that passes is recorded as verified."""
    record = _record_path(cache, entry.name, entry.version)
    try:
        try:
            unpacked = extract_checked(zip_path, entry.name, staging)
        except zipfile.BadZipFile as err:  # a damaged entry (CRC) that the sha256 of a wrong index let through
            raise DownloadError(f"{entry.url} cannot be unpacked ({err}); the archive is damaged") from None
        except UnsafeArchiveError as err:
            raise UnsafeArchiveError(f"{entry.url}: {err}") from None
        weights = _check_unpacked(unpacked, entry)
    except ValueError:  # the archive is refused (every refusal of the archive is one)
        zip_path.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        raise
    save_json({"name": entry.name, "version": entry.version, "url": entry.url, "sha256": entry.sha256,
               "size": entry.size}, record)
    return unpacked, weights


def _place(zip_path: Path, entry: ReleaseEntry, target: Path, force: bool, cache: Path) -> tuple[str, dict]:
    with made_folder(target.parent):
        return _place_in(zip_path, entry, target, force, cache)


def _place_in(zip_path: Path, entry: ReleaseEntry, target: Path, force: bool, cache: Path) -> tuple[str, dict]:
    remove_leftovers(target)  # staging folders of a killed run; never those of a bundle whose name extends this one
    with held_temporary(target, folder=True) as staging:  # another download's own is left alone; removed at the end
        unpacked, weights = _unpack(zip_path, entry, staging, cache)
        if target.is_symlink():
            raise FileExistsError(f"{target} is a symbolic link; remove it or choose another --bundle_dir")
        if not target.exists():
            os.replace(unpacked, target)
            return "unpacked", weights
        if _same_tree(unpacked, target):
            return "already in place, unchanged", weights
        if not force:
            raise FileExistsError(f"{target} exists and differs from {entry.name} v{entry.version}; nothing was "
                                  "changed: move it away, choose another --bundle_dir, or pass --force true (it is "
                                  f"kept as {target.name}.prev)")
        previous = target.with_name(target.name + ".prev")
        if previous.exists() or previous.is_symlink():
            raise FileExistsError(f"--force would keep {target} as {previous}, which exists; move one of them away")
        os.replace(target, previous)
        os.replace(unpacked, target)
        return f"replaced (previous kept as {previous})", weights


def download(
    name: str,
    version: str | None = None,
    index: str | None = None,
    bundle_dir: str = ".",
    cache_dir: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Command ``download``: fetch release ``name`` (``version``, default the newest in the index) into
    ``<bundle_dir>/<name>``.

    Args:
        name: bundle name, e.g. ``unimiss_pretraining``.
        version: release version; default the highest in the index (offline: the highest verified in the cache).
        index: ``model_info.json`` file or ``http(s)`` URL; default ``$UNIMISS_MONAI_INDEX``.
        bundle_dir: folder that receives ``<name>/`` (created).
        cache_dir: where verified zips are kept; default ``$UNIMISS_MONAI_CACHE`` or ``~/.cache/unimiss_monai``.
        force: replace an existing ``<bundle_dir>/<name>`` with other content (kept as ``<name>.prev``).
        progress: show a progress bar.
        timeout: seconds without data after which a connection is given up.

    Returns:
        ``{"bundle": path, "version", "sha256", "from_cache", "state", "weights"}``.
    """
    from unimiss_monai.utils.args import as_bool

    force, progress = as_bool(force, "force"), as_bool(progress, "progress")
    given = timeout
    try:  # checked up front: a local index or the cache would never use it, and urllib names no option
        timeout = float("nan") if isinstance(timeout, bool) else float(timeout)  # a bare --timeout is True
    except (TypeError, ValueError):
        timeout = float("nan")
    if not 0 < timeout < float("inf"):
        raise ValueError(f"download: --timeout must be a positive number of seconds (default 60), got {given!r}")
    check_name(name)
    version = None if version is None else check_version(version)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    index = index or os.environ.get(INDEX_ENV)
    entry, note = None, ""
    if index:
        try:
            entries, base = load_index(str(index), timeout)
        except OFFLINE_ERRORS as err:  # no connection: an HTTP error status is an answer, raised by load_index
            entry = _cached_entry(cache, name, version)
            if entry is None:
                raise DownloadError(f"index {index} cannot be read ({err}) and {cache} holds no verified {name}"
                                    f"{' v' + version if version else ''}; connect to the network or pass --index FILE") from None
            note = f"index {index} unreachable ({type(err).__name__}); "
        else:
            entry = resolve(entries, base, name, version, str(index))
    else:
        entry = _cached_entry(cache, name, version)
        if entry is None:
            raise ReleaseIndexError(f"no index given and no verified {name} in {cache}; pass --index URL|FILE or set ${INDEX_ENV}")
    zip_path = cache / f"{entry_key(entry.name, entry.version)}.zip"
    target = Path(bundle_dir).expanduser() / entry.name
    for path in (zip_path, _record_path(cache, entry.name, entry.version)):  # replaced in place below
        check_output_file(path, what="download: the cache file")
    # one download of this cache at a time, from the cache check to the bundle in place: two would write the same
    # .part file and rename the same staging folder into place; a failed first download leaves no empty cache folder
    with cache_lock(cache):
        from_cache = zip_path.is_file() and sha256_file(zip_path) == entry.sha256
        if not from_cache:
            if note:
                raise DownloadError(f"{note}the cached {zip_path} no longer verifies; connect to the network to fetch it "
                                    "again")
            zip_path.unlink(missing_ok=True)
            _record_path(cache, entry.name, entry.version).unlink(missing_ok=True)
            fetch(entry, zip_path, timeout, progress)
        # the zip is recorded as verified (and used offline) only once it has unpacked and its contents checked
        state, weights = _place(zip_path, entry, target, force, cache)
    source = f"{note}verified cache {zip_path}" if from_cache else entry.url
    # weights packaged with overlays fit the network only with them: said here, where the user first sees the weights
    overlays = f", fits the configs with {' + '.join(weights['overlays'])} only" if weights.get("overlays") else ""
    described = (f"; weights {weights['path']}: {weights['tensors']} tensors, variant {weights.get('variant') or '?'}"
                 f"{overlays}, trained: {weights.get('training') or 'not stated'}{_run_hint(target, weights)}"
                 if weights else "; no weights")
    print(f"download: {entry.name} v{entry.version} (sha256 {entry.sha256[:12]}, from {source}) -> {target}: "
          f"{state}{described}", flush=True)
    return {"bundle": str(target), "version": entry.version, "sha256": entry.sha256, "from_cache": from_cache,
            "state": state, "weights": weights}
