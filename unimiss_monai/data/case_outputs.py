"""All or none of one case's outputs: a case that fails part-way leaves none of the files it wrote.

A case of inference may write several files (a radiograph's mask, then its overlay picture). Written inside
:func:`one_case`, each through :func:`case_file`, one that fails (part-way, too) undoes itself and the earlier ones: a
file the case made is removed, and one it replaced (an earlier run's own output) gets its previous content back, so
after a case that fails the folder holds the earlier run's whole case or nothing of it, never a mask beside the
overlay of another run. The undoing is done by the run itself: a run killed between two files of a case (``kill -9``,
power lost) leaves the files written so far, beside a hidden copy of what they replaced, which the next run that
writes the case removes. A file of the user's is never replaced in the first place
(:func:`~unimiss_monai.data.output_ledger.replacing_own` refuses it), so none is removed. Outside :func:`one_case`,
:func:`case_file` is :func:`replacing_own`.

Example::

    with one_case():  # a failure anywhere in the block undoes the files written in it
        with case_file(out / "a_seg.nii.gz", out) as path:
            save_nifti(mask, affine, path)
        with case_file(out / "a_overlay.png", out) as path:
            save_png(picture, path)
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from pathlib import Path

from unimiss_monai.data.output_ledger import record_written, replacing_own
from unimiss_monai.data.temporaries import OLD_TAG, held_temporary, remove_leftovers

logger = logging.getLogger(__name__)

__all__ = ["case_file", "one_case"]


class _Case:
    """The files one case wrote so far, each with the copy of what it replaced (``None``: the case made it)."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack  # holds the copies: locked while the case runs, removed at its end
        self.written: list[tuple[Path, Path, Path | None]] = []  # (file, its output folder, previous content)


_CASE: ContextVar[_Case | None] = ContextVar("unimiss_monai_case", default=None)


@contextmanager
def one_case() -> Iterator[None]:
    """The block writes one case: when it raises, every file written in it through :func:`case_file` is undone
    (removed, or given back the content it replaced), then the error goes on. Within another :func:`one_case`, the
    outer block is the case."""
    if _CASE.get() is not None:
        yield
        return
    with ExitStack() as stack:
        case = _Case(stack)
        token = _CASE.set(case)
        try:
            yield
        except BaseException:
            _undo(case.written)
            raise
        finally:
            _CASE.reset(token)


@contextmanager
def case_file(path: str | os.PathLike, root: str | os.PathLike, flag: str = "--output_dir") -> Iterator[Path]:
    """:func:`~unimiss_monai.data.output_ledger.replacing_own` of one file of the case :func:`one_case` writes: a file
    of its own that ``path`` replaces is first copied aside (a hidden temporary beside it), so that a later failure of
    the case can put it back."""
    case = _CASE.get()
    with replacing_own(path, root, flag) as checked:
        previous = None
        if case is not None and checked.is_file():
            remove_leftovers(checked, OLD_TAG)  # copies a killed run left: its case ended with it
            previous = case.stack.enter_context(held_temporary(checked, OLD_TAG))
            shutil.copy2(checked, previous)  # the time too: the file put back is the one the folder's record lists
        if case is not None:  # before the write: one that fails part-way (a full disk) leaves a file to undo too
            case.written.append((checked, Path(root), previous))
        yield checked


def _undo(written: list[tuple[Path, Path, Path | None]]) -> None:
    """Remove each file a failed case made and put back each one it replaced; one that cannot be is logged by name,
    and the others are still undone."""
    for path, root, previous in reversed(written):
        try:
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(previous, path)
                record_written(path, root)  # its own again, as it was before this run
        except OSError as err:
            logger.error("%s is left as this failed case wrote it (%s): remove it, or run the case again", path, err)
