"""Which files of an output folder this package wrote, so that a rerun replaces its own files and nobody else's.

Evaluation and inference write fixed names into ``--output_dir`` (``<case>_seg.nii.gz``, ``summary.json``,
``metrics.json``, ``roc.png``, ...), a folder the user may share with files of their own. Each file written there is
recorded, by its path relative to the folder and its content's signature (size, modification time, SHA-256), in
``<output_dir>/.unimiss_monai_files`` (one line a write, appended; the last line of a name counts). A file of such a
name that exists but is not recorded is someone else's, and so is one changed since it was written (a segmentation
corrected in a viewer and saved in place): it is neither replaced nor removed, and the case or run that would write it
fails in one line naming it. A folder written by an earlier version has no record, so its files count as the user's:
move them away or choose another folder. A name recorded without a signature (by an earlier version, or for a write
under way when its run was killed) is replaceable whatever its content.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

from unimiss_monai.utils.hashing import sha256_file

__all__ = ["LEDGER_NAME", "NotOursError", "changed_since", "check_own_file", "check_own_files", "drawn_by_matplotlib",
           "file_signature", "read_signed_line", "record_written", "replacing_own", "signed_line"]

LEDGER_NAME = ".unimiss_monai_files"
_HEADER = "# files unimiss_monai wrote into this folder; a rerun replaces these and no other file\n"


def _relative(path: str | os.PathLike, root: str | os.PathLike) -> str | None:
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return None  # outside the folder: not the folder's business


def file_signature(path: Path) -> tuple[int, int, str]:
    """``(size, modification time in ns, SHA-256)`` of a file."""
    digest = sha256_file(path)
    st = path.stat()
    return st.st_size, st.st_mtime_ns, digest


# ledger path -> (bytes parsed, (device, inode), the last bytes parsed, names): each append is read once
_PARSED: dict[str, tuple[int, tuple[int, int], bytes, dict]] = {}
_MARK = 64  # how many of the last bytes parsed tell a ledger grown by appends from a new file on a reused inode


def signed_line(name: str, sig: tuple[int, int, str] | None) -> str:
    """The line that records the file ``name`` with its signature (:func:`file_signature`; ``None``: the name alone),
    as the ledger and the marker of a folder assembled whole (:mod:`~unimiss_monai.data.folder_marker`) list it."""
    return name if sig is None else "\t".join((name, *map(str, sig)))


def read_signed_line(line: str) -> tuple[str, tuple[int, int, str] | None]:
    """``(name, signature)`` of a :func:`signed_line` (``None``: recorded without one)."""
    fields = line.rsplit("\t", 3)
    if len(fields) == 4:
        try:
            return fields[0], (int(fields[1]), int(fields[2]), fields[3])
        except ValueError:  # a name with tabs in it, recorded without a signature
            pass
    return line, None


def _parse(lines: list[str], recorded: dict) -> None:
    for line in lines:
        if line and not line.startswith("#"):
            name, sig = read_signed_line(line)
            recorded[name] = sig


def written_here(root: str | os.PathLike) -> Mapping[str, tuple[int, int, str] | None]:
    """The names recorded in ``root``'s ledger with the signature of their last write (``None``: recorded by an
    earlier version, or before a replacement that did not finish); empty without a ledger. The ledger only grows by
    appends, so each call reads what was appended since the last one."""
    ledger = os.path.abspath(Path(root) / LEDGER_NAME)
    try:
        with open(ledger, "rb") as f:
            st = os.fstat(f.fileno())
            done, file_id, mark, recorded = _PARSED.get(ledger, (0, None, b"", {}))
            # another ledger at that path (deleted and written anew, even on the same inode): read it whole
            if (file_id != (st.st_dev, st.st_ino) or st.st_size < done
                    or os.pread(f.fileno(), len(mark), done - len(mark)) != mark):
                done, mark, recorded = 0, b"", {}
            f.seek(done)
            tail = f.read()
    except (FileNotFoundError, NotADirectoryError):
        _PARSED.pop(ledger, None)
        return MappingProxyType({})
    complete = tail[: tail.rfind(b"\n") + 1]  # a line still being appended is read next time
    if complete:  # a new dict: a mapping returned earlier stays as it was read (and is never parsed into twice)
        recorded = dict(recorded)
        _parse(complete.decode(errors="replace").splitlines(), recorded)
        done += len(complete)
        _PARSED[ledger] = (done, (st.st_dev, st.st_ino), (mark + complete)[-_MARK:], recorded)
    return MappingProxyType(recorded)  # read-only, so that it can be the cache's own and no copy is made per call


def changed_since(path: Path, recorded: tuple[int, int, str] | None) -> bool:
    """Whether ``path`` differs from the file recorded with signature ``recorded``: the size, then the content (a copy
    of the folder keeps the content, not the times)."""
    if recorded is None or not path.is_file():
        return False
    st = path.stat()
    if st.st_size != recorded[0]:
        return True
    return st.st_mtime_ns != recorded[1] and file_signature(path)[2] != recorded[2]


class NotOursError(FileExistsError):
    """``path`` inside ``root`` exists and this package did not write it there, or it was changed since
    (``changed``). The one-line message names ``flag``, the option that chooses ``root``; a command that chose
    ``root`` itself re-words it with :meth:`naming`."""

    def __init__(self, path: Path, root: Path, flag: str, changed: bool = False) -> None:
        self.path, self.root, self.flag, self.changed = Path(path), Path(root), flag, changed
        why = ("was changed after unimiss_monai wrote it (an edit of yours?)" if changed else
               f"exists and was not written by unimiss_monai (it is not listed in {Path(root) / LEDGER_NAME}, which "
               "earlier versions did not keep)")
        super().__init__(f"{path} {why}, so it is not replaced: move it away or choose another {flag}")

    def naming(self, flag: str) -> NotOursError:
        """The same refusal with ``flag`` as the option to change."""
        return NotOursError(self.path, self.root, flag, self.changed)


def check_own_file(path: str | os.PathLike, root: str | os.PathLike, flag: str = "--output_dir") -> Path:
    """Raise :class:`NotOursError` (a ``FileExistsError``, one line) when ``path`` inside ``root`` exists and was not
    written there by this package; returns ``path``. ``flag`` is the option that chooses ``root``, named in the fix."""
    path = Path(path)
    name = _relative(path, root)
    if name is None or not (path.exists() or path.is_symlink()):
        return path
    recorded = written_here(root)
    if name not in recorded:
        raise NotOursError(path, Path(root), flag)
    if changed_since(path, recorded[name]):
        raise NotOursError(path, Path(root), flag, changed=True)
    return path


def check_own_files(paths: Sequence[str | os.PathLike], root: str | os.PathLike, flag: str = "--output_dir",
                    written_earlier: bool = False) -> None:
    """:func:`check_own_file` of each of ``paths``. ``written_earlier``: their content shows that this package wrote
    them before it kept this record (e.g. a JSON in its own format), so those present are recorded first and pass."""
    if written_earlier:
        recorded = written_here(root)
        for path in paths:  # never a name already recorded: its content since is checked, not adopted
            if Path(path).is_file() and _relative(path, root) not in recorded:
                record_written(path, root)
    for path in paths:
        check_own_file(path, root, flag)


def drawn_by_matplotlib(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG that matplotlib wrote (its mark in the first chunk after the header): how a picture of
    this package's from a version before the record is told from a user's picture of the same name."""
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"Software\x00Matplotlib" in head


def record_written(path: str | os.PathLike, root: str | os.PathLike) -> None:
    """Record ``path``, just written, in ``root``'s ledger with its signature (nothing when that is recorded already)."""
    path = Path(path)
    name = _relative(path, root)
    if name is None:
        return
    sig = file_signature(path) if path.is_file() else None
    recorded = written_here(root)
    if name not in recorded or recorded[name] != sig:
        _append(root, signed_line(name, sig))


def _append(root: str | os.PathLike, line: str) -> None:
    # O_APPEND: the short lines of several ranks or writers do not interleave
    fd = os.open(Path(root) / LEDGER_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, ((_HEADER if os.fstat(fd).st_size == 0 else "") + line + "\n").encode())
    finally:
        os.close(fd)


@contextmanager
def replacing_own(path: str | os.PathLike, root: str | os.PathLike, flag: str = "--output_dir") -> Iterator[Path]:
    """``with replacing_own(out / "summary.json", out): save_json(obj, out / "summary.json")``: checks before the
    write (:func:`check_own_file`) and records the file after it succeeded.

    Replacing a file of its own, it first records the name without a signature (replaceable whatever it holds): a run
    killed between its write and the record leaves a file that is still its own, not one that looks edited."""
    path = check_own_file(path, root, flag)
    name = _relative(path, root)
    if name is not None and path.is_file():
        _append(root, name)
    try:
        yield path
    except BaseException:
        if name is not None and path.is_file():  # a failed write: whatever is there now was there or is ours
            record_written(path, root)
        raise
    record_written(path, root)
