"""Which files of an output folder this package wrote, so that a rerun replaces its own files and nobody else's.

Evaluation and inference write fixed names into ``--output_dir`` (``<case>_seg.nii.gz``, ``summary.json``,
``metrics.json``, ``roc.png``, ...), a folder the user may share with files of their own. Each file written there is
recorded, by its path relative to the folder, in ``<output_dir>/.unimiss_monai_files`` (one name a line, appended).
A file of such a name that exists but is not recorded is someone else's: it is neither replaced nor removed, and the
case or run that would write it fails in one line naming it. A folder written by an earlier version has no record, so
its files count as the user's: move them away or choose another folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LEDGER_NAME", "NotOursError", "check_own_file", "check_own_files", "record_written", "replacing_own"]

LEDGER_NAME = ".unimiss_monai_files"
_HEADER = "# files unimiss_monai wrote into this folder; a rerun replaces these and no other file\n"


def _relative(path: str | os.PathLike, root: str | os.PathLike) -> str | None:
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return None  # outside the folder: not the folder's business


def written_here(root: str | os.PathLike) -> set[str]:
    """The names recorded in ``root``'s ledger (empty without one)."""
    try:
        lines = (Path(root) / LEDGER_NAME).read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return set()
    return {line for line in lines if line and not line.startswith("#")}


class NotOursError(FileExistsError):
    """``path`` inside ``root`` exists and this package did not write it there. The one-line message names ``flag``,
    the option that chooses ``root``; a command that chose ``root`` itself re-words it with :meth:`naming`."""

    def __init__(self, path: Path, root: Path, flag: str) -> None:
        self.path, self.root, self.flag = Path(path), Path(root), flag
        super().__init__(
            f"{path} exists and was not written by unimiss_monai (it is not listed in {Path(root) / LEDGER_NAME}, "
            f"which earlier versions did not keep), so it is not replaced: move it away or choose another {flag}"
        )

    def naming(self, flag: str) -> NotOursError:
        """The same refusal with ``flag`` as the option to change."""
        return NotOursError(self.path, self.root, flag)


def check_own_file(path: str | os.PathLike, root: str | os.PathLike, flag: str = "--output_dir") -> Path:
    """Raise :class:`NotOursError` (a ``FileExistsError``, one line) when ``path`` inside ``root`` exists and was not
    written there by this package; returns ``path``. ``flag`` is the option that chooses ``root``, named in the fix."""
    path = Path(path)
    name = _relative(path, root)
    if name is not None and (path.exists() or path.is_symlink()) and name not in written_here(root):
        raise NotOursError(path, Path(root), flag)
    return path


def check_own_files(paths: Sequence[str | os.PathLike], root: str | os.PathLike, flag: str = "--output_dir",
                    written_earlier: bool = False) -> None:
    """:func:`check_own_file` of each of ``paths``. ``written_earlier``: their content shows that this package wrote
    them before it kept this record (e.g. a JSON in its own format), so those present are recorded first and pass."""
    if written_earlier:
        for path in paths:
            if Path(path).is_file():
                record_written(path, root)
    for path in paths:
        check_own_file(path, root, flag)


def record_written(path: str | os.PathLike, root: str | os.PathLike) -> None:
    """Add ``path`` to ``root``'s ledger (once). Appended with ``O_APPEND``: the short lines of several ranks or
    writers do not interleave."""
    name = _relative(path, root)
    if name is None or name in written_here(root):
        return
    ledger = Path(root) / LEDGER_NAME
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, ((_HEADER if os.fstat(fd).st_size == 0 else "") + name + "\n").encode())
    finally:
        os.close(fd)


@contextmanager
def replacing_own(path: str | os.PathLike, root: str | os.PathLike, flag: str = "--output_dir") -> Iterator[Path]:
    """``with replacing_own(out / "summary.json", out): save_json(obj, out / "summary.json")``: checks before the
    write (:func:`check_own_file`) and records the file after it succeeded."""
    yield check_own_file(path, root, flag)
    record_written(path, root)
