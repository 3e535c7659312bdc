"""The marker of a folder this package assembled whole (``writers.staged_dir``), and the files it lists.

A rerun replaces such a folder whole: a DRR case folder rendered with other settings, the report's picture folder.
A file the user put into it since (notes, a corrected mask in ``slabs/``) would go with it, so the marker lists every
file the folder was assembled with, and a file it does not list stops the replacement. A marker written before it
listed files (a plain first line) leaves the folder replaceable as it was then.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MARKER_HEADER", "files_under", "marker_text", "unlisted_file"]

MARKER_HEADER = "written by unimiss_monai; a rerun may replace this folder"
_LISTING = "files:"


def files_under(folder: Path) -> list[str]:
    """Every file and link under ``folder``, as ``/``-separated paths relative to it, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def marker_text(folder: Path) -> str:
    """The marker of ``folder`` as assembled now: the header, then every file under it."""
    return "\n".join([MARKER_HEADER, _LISTING, *files_under(folder)]) + "\n"


def unlisted_file(folder: Path, marker_name: str) -> str | None:
    """The first file under ``folder`` that its marker does not list (the marker itself aside), or ``None``: all
    listed, or a marker without a listing (written before markers listed their files)."""
    try:
        lines = (folder / marker_name).read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 2 or lines[1] != _LISTING:
        return None
    listed = set(lines[2:])
    return next((f for f in files_under(folder) if f != marker_name and f not in listed), None)
