"""Temporary names beside an output: made unique, told apart from every other file, and cleared after a killed run.

A writer assembles ``.<name>.<random><tail>`` beside ``<name>`` and renames it into place once whole, so a reader never
sees half a file; a run killed before its rename leaves only such temporaries, which the next write of the same name
removes (:func:`remove_leftovers`), or, in a folder many processes write at once, an age limit does
(:func:`remove_stale_temporaries`). A temporary made by :func:`held_temporary` is locked while its writer lives, so
another run writing the same name at the same time does not take it for a leftover.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unimiss_monai.utils.temporary_names import OLD_TAG, TMP_TAG

try:
    import fcntl
except ImportError:  # no advisory locks (Windows): every temporary left counts as a killed run's, as it always did
    fcntl = None

__all__ = ["OLD_TAG", "TMP_TAG", "held_temporary", "remove_leftovers", "remove_stale_temporaries", "remove_temporary",
           "temporaries_of", "temporary_beside"]

# the random part of a temporary name (``secrets.token_hex``; ``tempfile``, which earlier versions used, draws from
# ``[a-z0-9_]``): never a dot, so ``.p.<random><tag>`` can never be a temporary of ``p.1``
_RANDOM = "[a-z0-9_]+"


# the longest file name (bytes) most file systems take (ext4, XFS, btrfs, APFS, NTFS in characters)
_NAME_MAX = 255
_RANDOM_LENGTH = 8  # secrets.token_hex(4)


def _carried(name: str, tail: str) -> str:
    """``name`` as its temporaries carry it: whole where ``.<name>.<random><tail>`` fits :data:`_NAME_MAX`, else cut
    and ended by ``~`` and a hash of the whole name (two long names of one beginning keep apart). An output whose
    name fitted failed on its temporary's, "File name too long", after the case's other outputs were written."""
    # the bytes the file system stores: a name of undecodable bytes (Latin-1 on a UTF-8 system) holds surrogates,
    # which str.encode refuses
    room, stored = _NAME_MAX - 2 - _RANDOM_LENGTH - len(os.fsencode(tail)), os.fsencode(name)
    if len(stored) <= room:
        return name
    digest = hashlib.sha256(stored).hexdigest()[:8]
    return stored[: room - len(digest) - 1].decode("utf-8", errors="ignore") + f"~{digest}"


def temporary_beside(path: str | Path, tail: str = TMP_TAG, folder: bool = False) -> Path:
    """Create and return a new, empty temporary file (or folder) ``.<name>.<random><tail>`` beside ``path``, of a
    name no other writer gets, to be renamed onto ``path`` once whole. Permissions follow the umask, as with ``open``
    and ``mkdir``."""
    path = Path(path)
    for _ in range(100):
        tmp = path.parent / f".{_carried(path.name, tail)}.{secrets.token_hex(_RANDOM_LENGTH // 2)}{tail}"
        try:
            if folder:
                tmp.mkdir(mode=0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}; remove its .{path.name}.*{tail}")


@contextmanager
def held_temporary(path: str | Path, tail: str = TMP_TAG, folder: bool = False) -> Iterator[Path]:
    """:func:`temporary_beside`, locked for the block: :func:`remove_leftovers` of another process writing ``path``
    at the same time leaves it alone. The lock is advisory (``flock``) and the system drops it when its process dies,
    so the temporary of a killed run is still removed by the next one. The lock follows the file or folder when it is
    renamed into place; the block's end releases it, and removes the temporary if it is still there (the block
    failed before its rename), a folder with whatever it holds. Where the file system offers no such lock, the
    temporary is unlocked, as every temporary once was: a run whose temporary another run removed then fails in one
    line. (NFS locks files for every machine, but a staging folder against the runs of this machine only.)"""
    tmp = temporary_beside(path, tail, folder)
    # between its creation and the lock, another process's remove_leftovers could still take tmp for a leftover: a
    # window of a few system calls, where before there was the whole time a CT takes to render
    fd = _lock(tmp, folder)
    try:
        yield tmp
    finally:
        if folder:
            shutil.rmtree(tmp, ignore_errors=True)  # a failure here would hide the block's own
        elif os.path.exists(tmp):
            os.remove(tmp)
        if fd is not None:
            os.close(fd)


def _lock(tmp: Path, folder: bool) -> int | None:
    """An open descriptor holding an exclusive lock on the new temporary ``tmp``, or None where none can be had."""
    if fcntl is None:
        return None
    try:
        # a file opened for writing: NFS emulates flock with byte-range locks, whose exclusive kind needs that
        fd = os.open(tmp, os.O_RDONLY if folder else os.O_RDWR)
    except OSError:  # no descriptor to spare, or a umask that leaves its owner no access: unlocked
        return None
    # tmp is new, so only another process's look at it (_held) can hold it, and only for a moment: wait that out, but
    # not forever (a looking process stopped with Ctrl-Z)
    deadline = time.monotonic() + 5.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        except OSError:  # a file system without flock: unlocked
            break
    os.close(fd)
    return None


def _held(path: str | Path) -> bool:
    """Whether a living process holds ``path`` (:func:`held_temporary`); a link is never held."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone, a link, or unreadable: nothing to leave alone (removing an unreadable one says why)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no flock on this file system: nothing can be held there
        return False
    finally:
        os.close(fd)
    return False


def remove_temporary(path: str | Path) -> bool:
    """Remove a temporary file or staging folder (a link itself, never what it points to); False when it was already
    gone: its writer renamed it into place, or another process removed it, since it was listed."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_leftovers(path: str | Path, tail: str = TMP_TAG) -> None:
    """Remove the temporaries of ``path`` that a writer killed before its rename left (kill -9, power loss).

    Only ``path``'s own are matched, by the exact form :func:`temporary_beside` gives them: a glob ``.<name>.*<tail>``
    would also match the temporary of ``<name>.1`` (or of a DICOM UID folder ``<name>.<more>``), which another process may
    be writing at this moment, and a file of the user's is never of this form. One held by a living writer
    (:func:`held_temporary`) is left to it.
    """
    for stale in temporaries_of(Path(path), tail):
        if not _held(stale):
            remove_temporary(stale)


def temporaries_of(path: Path, tail: str) -> list[Path]:
    """The temporaries of exactly ``path`` (see :func:`remove_leftovers`)."""
    name = _carried(path.name, tail)
    own = re.compile(rf"\.{re.escape(name)}\.{_RANDOM}{re.escape(tail)}")
    return [p for p in path.parent.glob(f".{glob.escape(name)}.*{glob.escape(tail)}") if own.fullmatch(p.name)]


def remove_stale_temporaries(folder: str | Path, older_than_s: float, tail: str = TMP_TAG) -> int:
    """Remove every temporary in ``folder`` of the form :func:`temporary_beside` gives, whatever file it was for,
    that has not been written for ``older_than_s`` seconds; returns how many went.

    For a folder many processes write at once (a shared cache), where :func:`remove_leftovers` cannot tell a killed
    writer's temporary from a live one's: each write moves its file's modification time, so one left that long has no
    writer. One listing of the folder; a file of the user's is never of this form.
    """
    form = re.compile(rf"\..+\.{_RANDOM}{re.escape(tail)}")
    now, removed = time.time(), 0
    with os.scandir(folder) as listing:
        for entry in listing:
            if not form.fullmatch(entry.name):
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:  # renamed into place (or removed) by its writer since the listing
                continue
            if age > older_than_s and not _held(entry.path) and remove_temporary(entry.path):
                removed += 1
    return removed
