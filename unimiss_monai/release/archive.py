"""Release archives: written byte for byte reproducibly, and read back only after every entry has been checked.

A release zip holds one folder, ``<name>/``, the layout ``python -m monai.bundle download --url`` unpacks into
``<bundle_dir>/<name>``. Writing fixes everything a zip records besides the content (entry order, timestamps,
permissions, compression level), so the same inputs give the same bytes and the same sha256. Reading refuses, before
anything is written, an archive whose entries would land outside that folder (absolute paths, ``..``, drive letters,
backslashes), links or special files, duplicate names, a file that other entries lie inside, or more data than the
archive can plausibly hold.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from unimiss_monai.utils.hashing import sha256_file  # re-exported: package, official and download hash with it

__all__ = [
    "UnsafeArchiveError", "check_members", "extract_checked", "sha256_bytes", "sha256_file", "torch_bytes",
    "zip_bytes",
]

#: every entry's timestamp: the earliest a zip can record, so the archive does not depend on when it was built
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644  # regular file, rw-r--r--
# an archive may not unpack to more than this many times its own size (configs compress ~5x, weights ~1.1x), nor
# beyond the absolute cap: a zip bomb is refused before it fills the disk
_MAX_RATIO = 100
_MAX_TOTAL = 64 << 30
_MAX_ENTRIES = 10_000


class UnsafeArchiveError(ValueError):
    """A release archive that would write outside its folder, holds links, or is not the bundle it claims to be."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def torch_bytes(obj) -> bytes:
    """``torch.save(obj)`` into memory. Saved to a buffer, the archive's record prefix is always ``archive/`` (a file
    path would put the temporary file's random name there), so equal tensors give equal bytes."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def zip_bytes(entries: Iterable[tuple[str, bytes]]) -> bytes:
    """``(arcname, data)`` entries, sorted by name, as a reproducible deflated zip.

    Every entry gets the same timestamp (1980-01-01), mode 0644, Unix as its creating system and compression level 9,
    so the bytes depend only on the names and data given (and the zlib version).
    """
    entries = sorted(entries)
    names = [n for n, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError("zip_bytes: duplicate entry names")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = _FILE_MODE << 16
            zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()


def _member_problem(info: zipfile.ZipInfo, name: str) -> str | None:
    raw = info.filename
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a special file"
        return f"entry {raw!r} is {kind}"
    if "\\" in raw or "\x00" in raw or (len(raw) > 1 and raw[1] == ":"):
        return f"entry {raw!r} has a Windows path (backslash or drive letter)"
    if raw.startswith("/"):
        return f"entry {raw!r} is an absolute path"
    parts = PurePosixPath(raw).parts
    if ".." in parts or "." in parts:
        return f"entry {raw!r} contains '..' or '.'"
    if not parts or parts[0] != name:
        return f"entry {raw!r} lies outside the bundle folder {name + '/'!r}"
    if info.flag_bits & 0x1:
        return f"entry {raw!r} is encrypted"
    return None


def check_members(zf: zipfile.ZipFile, name: str, archive_size: int) -> list[zipfile.ZipInfo]:
    """The file entries of ``zf`` once all of them are safe to unpack under ``<dest>/<name>/``.

    Raises:
        UnsafeArchiveError (one line naming the first bad entry): an entry outside ``<name>/`` (absolute, ``..``,
            another top folder), a symbolic link or special file, a Windows path, an encrypted or duplicate entry, a
            file that other entries lie inside, or more uncompressed data than ``100 x`` the archive (zip bomb); an
            archive without a file ``<name>/configs/metadata.json``.
    """
    infos = zf.infolist()
    if len(infos) > _MAX_ENTRIES:
        raise UnsafeArchiveError(f"the archive has {len(infos)} entries (more than {_MAX_ENTRIES})")
    seen, files, total = set(), [], 0
    for info in infos:
        problem = _member_problem(info, name)
        if problem:
            raise UnsafeArchiveError(problem)
        key = info.filename.rstrip("/")
        if key in seen:
            raise UnsafeArchiveError(f"entry {info.filename!r} appears twice")
        seen.add(key)
        if not info.is_dir():
            files.append(info)
            total += info.file_size
    # every folder some entry lies in (or a folder entry names): a file of that name could not be unpacked
    folders = {"/".join(PurePosixPath(key).parts[:i]) for key in seen for i in range(1, len(PurePosixPath(key).parts))}
    folders |= {info.filename.rstrip("/") for info in infos if info.is_dir()}
    clash = next((info.filename for info in files if info.filename in folders), None)
    if clash is not None:
        raise UnsafeArchiveError(f"entry {clash!r} is a file, but other entries lie inside it")
    limit = min(_MAX_TOTAL, max(1 << 30, _MAX_RATIO * archive_size))
    if total > limit:
        raise UnsafeArchiveError(f"the archive would unpack to {total} bytes, more than {limit} (a zip bomb?)")
    meta = f"{name}/configs/metadata.json"
    if meta not in seen:
        raise UnsafeArchiveError(f"the archive has no {meta}: it is not the bundle {name!r}")
    if not any(info.filename == meta for info in files):
        raise UnsafeArchiveError(f"the archive's {meta} is a folder, not a file: it is not a valid bundle")
    return files


def extract_checked(zip_path: str | os.PathLike, name: str, dest: str | os.PathLike) -> Path:
    """Unpack the checked entries of ``zip_path`` into ``dest`` (normally a fresh staging folder); returns
    ``dest/<name>``. Each entry is written as a new regular file (no permissions, links or timestamps from the
    archive), its size and CRC checked by ``zipfile`` while it is read."""
    dest = Path(dest)
    with zipfile.ZipFile(zip_path) as zf:
        files = check_members(zf, name, os.path.getsize(zip_path))
        for info in files:
            target = dest.joinpath(*PurePosixPath(info.filename).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            # "x": never follow or replace anything already there (the staging folder is new, so nothing is)
            with zf.open(info) as src, open(target, "xb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    return dest / name
