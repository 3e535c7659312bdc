"""Temporary names beside an output: made unique, told apart from every other file, and cleared after a killed run.

A writer assembles ``.<name>.<random><tail>`` beside ``<name>`` and renames it into place once whole, so a reader never
sees half a file; a run killed before its rename leaves only such temporaries, which the next write of the same name
removes (:func:`remove_leftovers`), or, in a folder many processes write at once, an age limit does
(:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import time
from pathlib import Path

__all__ = ["OLD_TAG", "TMP_TAG", "remove_leftovers", "remove_stale_temporaries", "remove_temporary", "temporaries_of",
           "temporary_beside"]

# ends the name of every temporary file or folder the writers make, so a leftover of a killed run can be told apart
TMP_TAG = ".unimiss-tmp"
# the previous folder that staged_dir moves aside while it renames the new one in
OLD_TAG = ".unimiss-old"
# the random part of a temporary name (``secrets.token_hex``; ``tempfile``, which earlier versions used, draws from
# ``[a-z0-9_]``): never a dot, so ``.p.<random><tag>`` can never be a temporary of ``p.1``
_RANDOM = "[a-z0-9_]+"


def temporary_beside(path: str | Path, tail: str = TMP_TAG, folder: bool = False) -> Path:
    """Create and return a new, empty temporary file (or folder) ``.<name>.<random><tail>`` beside ``path``, of a
    name no other writer gets, to be renamed onto ``path`` once whole. Permissions follow the umask, as with ``open``
    and ``mkdir``."""
    path = Path(path)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{tail}"
        try:
            if folder:
                tmp.mkdir(mode=0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}; remove its .{path.name}.*{tail}")


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
    be writing at this moment, and a file of the user's is never of this form.
    """
    for stale in temporaries_of(Path(path), tail):
        remove_temporary(stale)


def temporaries_of(path: Path, tail: str) -> list[Path]:
    """The temporaries of exactly ``path`` (see :func:`remove_leftovers`)."""
    own = re.compile(rf"\.{re.escape(path.name)}\.{_RANDOM}{re.escape(tail)}")
    return [p for p in path.parent.glob(f".{glob.escape(path.name)}.*{glob.escape(tail)}") if own.fullmatch(p.name)]


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
            if age > older_than_s and remove_temporary(entry.path):
                removed += 1
    return removed
