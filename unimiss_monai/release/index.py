"""The release index: a ``model_info.json``-style file naming each released bundle version, where its zip is and its
sha256.

One entry per release, keyed ``<name>_v<version>`` as in MONAI model-zoo's ``model_info.json``::

    {"unimiss_pretraining_v0.2.0": {"name": "unimiss_pretraining", "version": "0.2.0",
                                     "source": "unimiss_pretraining_v0.2.0.zip", "hash_type": "sha256",
                                     "hash_val": "<64 hex digits>", "size": 1234567}}

``source`` is a URL, or a path relative to the index itself, so a folder holding the index and the zips can be
served as it is from any web server, a Hugging Face model repository (``.../resolve/main/model_info.json``) or a
shared drive. Everything read from an index is checked before use: names and versions are plain tokens, the hash is a
sha256, and a remote index may only point to ``http(s)`` URLs.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from unimiss_monai.data.writers import save_bytes

__all__ = [
    "OFFLINE_ERRORS", "ReleaseIndexError", "ReleaseEntry", "check_name", "check_version", "entry_key", "load_index",
    "resolve", "update_index", "version_key",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,3}([.+-]?[A-Za-z0-9]+){0,3}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_INDEX_BYTES = 16 << 20

#: what "the server cannot be reached" is: no connection, a dropped one (``IncompleteRead``, ``RemoteDisconnected``) or
#: a timeout; ``load_index`` lets these through so that ``download`` can use a verified zip of its cache instead. An
#: HTTP error status (404, 500) is an answer, and an unreadable local file a local problem: neither is one of these.
OFFLINE_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, http.client.IncompleteRead,
                  http.client.RemoteDisconnected)


class ReleaseIndexError(ValueError):
    """An index that cannot be read or holds an entry this package refuses to follow."""


@dataclass(frozen=True)
class ReleaseEntry:
    """One checked index entry: the zip at ``url`` must hash to ``sha256`` (and be ``size`` bytes when known)."""

    name: str
    version: str
    url: str
    sha256: str
    size: int | None = None


def entry_key(name: str, version: str) -> str:
    return f"{name}_v{version}"


def check_name(name: str, what: str = "bundle name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ReleaseIndexError(f"{what} {name!r} is not a plain name (letters, digits, '_', '-', '.')")
    return name


def check_version(version, what: str = "version") -> str:
    version = str(version)
    if not _VERSION.fullmatch(version):
        raise ReleaseIndexError(f"{what} {version!r} is not a version like 0.2.0")
    return version


def version_key(version: str) -> tuple:
    """Sort key: numeric components compare as numbers (0.10.0 > 0.9.0); a suffix (rc1) sorts before the release."""
    m = re.match(r"([0-9.]+)(.*)", version)
    nums = tuple(int(p) for p in m.group(1).strip(".").split(".") if p) if m else ()
    suffix = m.group(2) if m else version
    return (nums, 0 if suffix else 1, suffix)


def load_index(index: str, timeout: float = 60.0) -> tuple[dict, str]:
    """``(entries, base)`` of the index at ``index`` (an ``http(s)`` URL, a local file, or a folder holding
    ``model_info.json``, local or a URL ending in ``/``); ``base`` is what relative ``source`` entries are resolved
    against.

    Raises:
        ReleaseIndexError: an HTTP error status (404, 500, ...), larger than 16 MiB, not JSON, or not an object of
            entries.
        FileNotFoundError: a local index (or ``model_info.json`` in a folder given) that does not exist.
        OSError / urllib.error.URLError: no connection to the server (the caller may fall back to its cache).
    """
    if urllib.parse.urlsplit(index).scheme in ("http", "https"):
        if urllib.parse.urlsplit(index).path.endswith("/"):  # a served release folder, as a local one: its index
            index = urllib.parse.urljoin(index, "model_info.json")
        try:
            with urllib.request.urlopen(index, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
                data = resp.read(_MAX_INDEX_BYTES + 1)
        except urllib.error.HTTPError as err:  # the server answered: a wrong address, not an offline network
            raise ReleaseIndexError(f"index {index} answered HTTP {err.code} {err.reason}; check the URL (it should "
                                    "name a model_info.json)") from None
        except http.client.HTTPException as err:
            if isinstance(err, OFFLINE_ERRORS):
                raise  # a dropped connection: the caller may fall back to its cache
            raise ReleaseIndexError(f"index {index} answered no valid HTTP ({type(err).__name__}: {err}); check the "
                                    "URL") from None
        base = index
    else:
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(index).path)) if index.startswith("file:") else Path(index)
        if path.is_dir():  # a release folder as package-bundle writes it: its index is model_info.json
            if not (path / "model_info.json").is_file():
                raise FileNotFoundError(f"index {index} is a folder without a model_info.json; pass --index the "
                                        "model_info.json file (or URL), or the folder package-bundle wrote it to")
            path = path / "model_info.json"
        elif not path.is_file():
            raise FileNotFoundError(f"index {index} does not exist; pass --index a model_info.json file or URL")
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_INDEX_BYTES + 1)
        except OSError as err:  # unreadable (permissions): a local problem, never a reason to go offline
            raise ReleaseIndexError(f"index {index} cannot be read ({err.strerror or err})") from None
        base = path.resolve().as_uri()
    if len(data) > _MAX_INDEX_BYTES:
        raise ReleaseIndexError(f"index {index} is larger than {_MAX_INDEX_BYTES >> 20} MiB; it is not a release index")
    try:
        entries = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReleaseIndexError(f"index {index} is not JSON ({err}); pass a model_info.json") from None
    if not isinstance(entries, dict):
        raise ReleaseIndexError(f"index {index} holds a {type(entries).__name__}, not an object of <name>_v<version> entries")
    return entries, base


def _checked_entry(key: str, raw, base: str, index: str) -> ReleaseEntry:
    if not isinstance(raw, dict):
        raise ReleaseIndexError(f"index {index}: entry {key!r} is not an object")
    name, version = check_name(raw.get("name", ""), f"index {index}: entry {key!r} name"), check_version(
        raw.get("version", ""), f"index {index}: entry {key!r} version")
    if key != entry_key(name, version):
        raise ReleaseIndexError(f"index {index}: entry {key!r} describes {entry_key(name, version)}; the index is inconsistent")
    if raw.get("hash_type", "sha256") != "sha256" or not _SHA256.fullmatch(str(raw.get("hash_val", ""))):
        why = (f"hash_type {raw.get('hash_type')!r}, not sha256" if raw.get("hash_type", "sha256") != "sha256"
               else "no hash_val" if "hash_val" not in raw
               else f"hash_val {raw['hash_val']!r}, not a sha256 (64 hex digits)")
        raise ReleaseIndexError(f"index {index}: entry {key!r} has {why}; refusing an unverifiable download")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ReleaseIndexError(f"index {index}: entry {key!r} has size {size!r}, not a positive integer")
    source = raw.get("source")
    if not isinstance(source, str) or not source:
        raise ReleaseIndexError(f"index {index}: entry {key!r} has no source")
    url = urllib.parse.urljoin(base, source)
    scheme = urllib.parse.urlsplit(url).scheme
    # a remote index may only send the client to web URLs; a local one may also name files beside it
    allowed = ("http", "https") if urllib.parse.urlsplit(base).scheme in ("http", "https") else ("http", "https", "file")
    if scheme not in allowed:
        raise ReleaseIndexError(f"index {index}: entry {key!r} points to {url!r}; only {'/'.join(allowed)} sources are followed")
    return ReleaseEntry(name, version, url, str(raw["hash_val"]), size)


def resolve(entries: dict, base: str, name: str, version: str | None, index: str) -> ReleaseEntry:
    """The entry for ``name`` at ``version`` (the highest version in the index when ``None``), checked.

    Raises:
        ReleaseIndexError (one line): unknown name or version (the versions present are listed), or a refused entry.
    """
    check_name(name)
    prefix = f"{name}_v"
    # a key of another bundle whose name extends this one (``<name>_v2_v0.1.0``) shares the prefix; a version holds
    # no "_", so what follows the prefix there is no version
    versions = sorted((k[len(prefix):] for k in entries
                       if isinstance(k, str) and k.startswith(prefix) and _VERSION.fullmatch(k[len(prefix):])),
                      key=version_key)
    if version is None:
        if not versions:
            names = sorted({k.rsplit("_v", 1)[0] for k in entries if isinstance(k, str) and "_v" in k})
            held = names or f"none: no key of the form <name>_v<version>, e.g. {name}_v0.1.0"
            raise ReleaseIndexError(f"index {index} has no bundle {name!r} (it has {held}); check the name")
        version = versions[-1]
    version = check_version(version)
    key = entry_key(name, version)
    if key not in entries:
        raise ReleaseIndexError(f"index {index} has no {name} version {version} (it has {versions or 'none'}); pass one of them")
    return _checked_entry(key, entries[key], base, index)


def update_index(path: str | os.PathLike, name: str, version: str, source: str, sha256: str, size: int) -> dict:
    """Add or replace the entry of ``name`` ``version`` in the index file ``path`` (created when absent); the file is
    rewritten atomically with sorted keys. Returns the entry."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a release index; move it away from the release folder")
    entries = {}
    if path.exists():
        entries, _ = load_index(str(path))
    entry = {"name": name, "version": version, "source": source, "hash_type": "sha256", "hash_val": sha256, "size": size}
    entries[entry_key(name, version)] = entry
    save_bytes(json.dumps(dict(sorted(entries.items())), indent=2) + "\n", path)
    return entry
