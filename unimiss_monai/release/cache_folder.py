"""Folders a download makes: made for the run and removed again when it fails, and the cache folder it locks.

Downloads that share a cache (jobs of a cluster starting together) take turns through a lock on the cache folder.
A first download that fails removes the cache folder it made, while it still holds the lock; a download that was
waiting then finds the folder it locked gone, and makes and locks a new one. Removing it after the lock is released
would let the waiting download hold a lock on a removed folder while a third locks the new one, and the two would
write the same files at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cache_lock", "made_folder"]

# turns a waiting download takes when the folder it locked was removed under it (each by a failed first download)
_LOCK_TRIES = 100


def _remove_made(made: list[Path]) -> None:
    """Remove the folders of ``made`` (shallowest first), deepest first, each only while it is empty."""
    for path in reversed(made):
        try:
            path.rmdir()  # refuses a folder that is not empty
        except FileNotFoundError:
            continue
        except OSError:
            break  # not empty: neither are the folders holding it


def _make(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones this call created, shallowest first."""
    made: list[Path] = []
    for _ in range(_LOCK_TRIES):
        try:
            for path in reversed([p for p in (folder, *folder.parents) if not p.exists()]):  # shallowest first
                try:
                    path.mkdir()
                    made.append(path)
                except FileExistsError:  # another process made it meanwhile: theirs, not ours
                    if not path.is_dir():
                        raise
            return made
        except FileNotFoundError:  # a folder above was removed meanwhile (a failed download's clean-up): again
            continue
    raise FileNotFoundError(f"{folder}: its parent folders were removed {_LOCK_TRIES} times while it was being made")


@contextlib.contextmanager
def made_folder(folder: Path) -> Iterator[None]:
    """Create ``folder`` (and its missing parents) for the body; when the body fails, remove the folders this call
    made again, deepest first, each only while it is empty: a failed run leaves no folder it created, and never
    removes one it did not create, or one that something else has put a file in since."""
    with _removed_on_failure(_make(folder)):
        yield


def _same_folder(fd: int, folder: Path) -> bool:
    """Whether the open folder ``fd`` is still the one at the path ``folder``."""
    try:
        now = os.stat(folder)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder ``cache`` for the body, creating it (and its missing parents) when missing;
    when the body fails, the folders this call made are removed again while empty, before the lock is released. The
    lock is on the folder itself (no lock file is left behind) and is released when the process ends, however it
    ends. Where the file system cannot lock (some network file systems, Windows), the body runs unlocked."""
    for _ in range(_LOCK_TRIES):
        made = _make(cache)
        try:
            import fcntl

            fd = os.open(cache, os.O_RDONLY)
        except FileNotFoundError:  # removed since, by a failed first download: made again
            continue
        except (ImportError, OSError):
            with _removed_on_failure(made):
                yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass  # no locking here: go on as an unlocked download
            else:
                if not _same_folder(fd, cache):  # a failed first download removed it while this one waited
                    continue
            with _removed_on_failure(made):  # inside the lock: see the module's docstring
                yield
            return
        finally:
            os.close(fd)  # releases the lock
    raise RuntimeError(f"download: the cache folder {cache} was removed {_LOCK_TRIES} times while this download "
                       "waited for it; choose another --cache_dir")


@contextlib.contextmanager
def _removed_on_failure(made: list[Path]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        _remove_made(made)
        raise
