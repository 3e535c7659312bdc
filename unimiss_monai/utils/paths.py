"""Paths a user named that cannot be used as they are, said in one line: a loop of symbolic links (``ln -s b a;
ln -s a b``), and a file where a folder has to be.

``Path.resolve()`` raises ``RuntimeError("Symlink loop from ...")`` on such a path (Python 3.11, 3.12) and ``mkdir``
an ``OSError`` deep in whatever first writes there; neither names the option the path came from.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["check_no_symlink_loop", "file_in_the_way", "symlink_loop_problem"]


def _loops(path: str | os.PathLike) -> bool:
    try:
        os.stat(path)
    except OSError as err:
        return err.errno == errno.ELOOP
    except (TypeError, ValueError):  # not a path at all (a NUL byte): refused by whatever opens it
        return False
    return False


def symlink_loop_problem(path: str | os.PathLike, what: str) -> str | None:
    """One line naming ``what`` (e.g. ``--output_dir``) and the fix when ``path``, or a folder above it, is a symbolic
    link that leads back to itself (or through more links than the system follows); else ``None``. A path that
    merely does not exist is not one."""
    if not _loops(path):
        return None
    return (f"{what} {str(path)!r} leads into a loop of symbolic links (links that point back at each other); point "
            f"{what} at a real file or folder, or repair the links")


def check_no_symlink_loop(path: str | os.PathLike, what: str) -> str | os.PathLike:
    """``path``, or ``ValueError`` with :func:`symlink_loop_problem`'s line."""
    problem = symlink_loop_problem(path, what)
    if problem is not None:
        raise ValueError(problem)
    return path


def file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The nearest of ``path`` and the folders above it that exists (a link counts, even a broken one) and is no
    folder: a file where a folder has to be, so nothing can be made at or inside ``path``; ``None`` when there is
    none."""
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), None)
    return None if blocker is None or blocker.is_dir() else blocker
