"""The marker of a folder this package assembled whole (``writers.staged_dir``), and the files it lists.

A rerun replaces such a folder whole: a DRR case folder rendered with other settings, the report's picture folder.
A file the user put into it since (notes, a corrected mask in ``slabs/``) would go with it, and so would the user's
edit of one of its files (a picture annotated in place): the marker lists every file the folder was assembled with,
each with its signature (size, modification time, SHA-256, as :mod:`~unimiss_monai.data.output_ledger` records a
file), and a file it does not list, or one changed since, stops the replacement. A marker written before it listed
files (a plain first line), or a file listed without a signature, leaves the folder replaceable as it was then.
"""

from __future__ import annotations

from pathlib import Path

from unimiss_monai.data.output_ledger import changed_since, file_signature, read_signed_line, signed_line

__all__ = ["MARKER_HEADER", "changed_file", "files_under", "marker_text", "unlisted_file"]

MARKER_HEADER = "written by unimiss_monai; a rerun may replace this folder"
_LISTING = "files:"


def files_under(folder: Path) -> list[str]:
    """Every file and link under ``folder``, as ``/``-separated paths relative to it, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _line(folder: Path, name: str) -> str:
    path = folder / name
    # a link is listed, not followed: what it points to is not ours
    return signed_line(name, None if path.is_symlink() or not path.is_file() else file_signature(path))


def marker_text(folder: Path) -> str:
    """The marker of ``folder`` as assembled now: the header, then every file under it with its signature."""
    return "\n".join([MARKER_HEADER, _LISTING, *(_line(folder, f) for f in files_under(folder))]) + "\n"


def _listed(folder: Path, marker_name: str) -> dict[str, tuple[int, int, str] | None] | None:
    """The files the marker lists, each with its signature (``None`` when listed without one); ``None`` for a marker
    without a listing, or none at all."""
    try:
        lines = (folder / marker_name).read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 2 or lines[1] != _LISTING:
        return None
    return dict(map(read_signed_line, lines[2:]))


def unlisted_file(folder: Path, marker_name: str) -> str | None:
    """The first file under ``folder`` that its marker does not list (the marker itself aside), or ``None``: all
    listed, or a marker without a listing (written before markers listed their files)."""
    listed = _listed(folder, marker_name)
    if listed is None:
        return None
    return next((f for f in files_under(folder) if f != marker_name and f not in listed), None)


def changed_file(folder: Path, marker_name: str) -> str | None:
    """The first file the marker of ``folder`` lists that differs from the file it listed (size, then content: a copy
    of the folder keeps the content, not the times), or ``None``."""
    listed = _listed(folder, marker_name) or {}
    return next((name for name, sig in listed.items() if changed_since(folder / name, sig)), None)
