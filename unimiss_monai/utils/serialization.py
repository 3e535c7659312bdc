"""Reading torch files that a user hands over without running code from them.

``torch.load(..., weights_only=False)`` unpickles arbitrary objects, so a crafted checkpoint runs code before any check
of its content. :func:`load_torch_file` reads with ``weights_only=True`` (tensors, numbers, strings and containers),
lets a caller allow a few more classes by name (official UniMiSS checkpoints pickle an ``argparse.Namespace``), and
turns a refusal into one line that names the refused class.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["UnreadableCheckpointError", "UnsafeCheckpointError", "load_torch_file"]

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
#: how much of a file is read to tell what it is when torch cannot read it
_SNIFF = 512
_LFS_POINTER = "version https://git-lfs.github.com/spec/"
_LFS_SEEN = "it is a Git LFS pointer, not the weights it stands for"


class UnsafeCheckpointError(ValueError):
    """A file holds an object a weights-only load does not create (a class or function outside the allow-list)."""


class UnreadableCheckpointError(ValueError):
    """A file is not a readable torch file (truncated, another format)."""


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _first_line(error: Exception, text: str | None = None) -> str:
    lines = [s.strip() for s in (str(error) if text is None else text).splitlines() if s.strip()]
    return lines[0] if lines else type(error).__name__


def _refusal(what: str, path: str, error: Exception, allowed: Sequence[type]) -> str:
    found = _UNSUPPORTED_GLOBAL.search(str(error))
    names = [found.group(1)] if found else []
    if not names:
        try:  # zip-format files list their globals without unpickling anything
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - raw pickle streams and other formats cannot be scanned this way
            names = []
    if not names:
        detail = _first_line(error, str(error).split("WeightsUnpickler error:")[-1])
        return (
            f"{what} {path!r} is not a file written by torch.save (the weights-only reader stopped at: {detail}); "
            "pass a .pt/.pth checkpoint"
        )
    kinds = ["tensors", "plain containers", *(_qualname(c) for c in allowed)]
    return (
        f"{what} {path!r} holds {', '.join(names)}, which is refused (only {', '.join(kinds[:-1])} and {kinds[-1]} "
        "are read, so no code in the file runs); re-save just its state dicts with torch.save, or use another file"
    )


def _glance(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(_SNIFF)
    except OSError:
        return None


def _not_torch(path: str) -> str | None:
    """What ``path`` is, when a glance at its first bytes shows it cannot be a ``torch.save`` file (empty, text, a Git
    LFS pointer left where the weights should be), else ``None``."""
    head = _glance(path)
    if head is None:
        return None
    if not head:
        return "it is empty"
    # a multi-byte character may be cut at the end of the glance
    text = next((t for t in map(_utf8, (head[:len(head) - cut] for cut in range(4))) if t is not None), None)
    if not text or not all(c.isprintable() or c in "\t\r\n" for c in text):
        return None
    if text.startswith(_LFS_POINTER):
        return _LFS_SEEN
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"it holds text ({first[:40] + ('...' if len(first) > 40 else '')!r})"


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _zip_seen(path: str) -> str:
    """What a zip archive that torch cannot read is: a bundle's release zip (a user may pass the zip that
    ``monai.bundle download`` leaves beside the folder), another archive, or a damaged one."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "it is a zip archive that does not read back whole (truncated or damaged)"
    bundle = next((n[: -len("configs/metadata.json")] for n in names if n.endswith("configs/metadata.json")), None)
    if bundle is not None:
        return (f"it is a bundle archive (it holds {bundle}configs/metadata.json); pass the bundle folder it unpacks "
                "to (the one monai.bundle download writes beside it), or that folder's models/model.pt")
    return "it is a zip archive, but not one torch.save wrote"


def _unreadable(what: str, path: str, error: Exception) -> UnreadableCheckpointError:
    """One line for a file torch cannot read: what the file is not, what it seems to be, and what to pass."""
    if isinstance(error, OSError):  # no file there, a folder, no permission: the system's reason is the answer
        return UnreadableCheckpointError(f"{what} {path!r} cannot be read ({error.strerror or error}); pass a readable "
                                         ".pt/.pth checkpoint")
    seen = _not_torch(path)
    if seen is None:
        zipped = (_glance(path) or b"").startswith(b"PK\x03\x04")
        # torch's own reasons (a miniz code, a pickle opcode, "pop from empty list") mean nothing to the user
        seen = (_zip_seen(path) if zipped else "torch cannot read it (truncated, damaged, or another format)")
        if seen.startswith("it is a bundle archive"):
            return UnreadableCheckpointError(f"{what} {path!r} is not a file written by torch.save: {seen}")
    fix = ("fetch the weights with git lfs pull, or pass another .pt/.pth checkpoint" if seen == _LFS_SEEN
           else "pass a .pt/.pth checkpoint (e.g. the models/model.pt of a run)")
    return UnreadableCheckpointError(f"{what} {path!r} is not a file written by torch.save: {seen}; {fix}")


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint", allowed: Sequence[type] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, also accepting the classes in ``allowed``.

    Args:
        path: the file.
        what: how the error names the file (``"pretrained checkpoint"``, ``"convert-checkpoint: source"``, ...).
        allowed: extra classes the file may hold (e.g. ``[argparse.Namespace]``); nothing else is unpickled.

    Raises:
        UnsafeCheckpointError: the file holds any other class or function; the message names it. Nothing from the
            file has run.
        UnreadableCheckpointError: the file is not a readable torch file (empty, text, truncated, another format);
            the message says what it seems to be.
    """
    path = os.fspath(path)
    try:
        with torch.serialization.safe_globals(list(allowed)), warnings.catch_warnings():
            # torch warns about pickle protocols it was not written with, also on the files it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # a text file reads as a pickle stream whose opcodes the weights-only reader refuses: it is no refused class
        if "weights only load failed" not in str(e).lower() or _not_torch(path) is not None:
            raise _unreadable(what, path, e) from e
        # torch's own message spans a dozen lines and suggests weights_only=False: replaced, not chained
        raise UnsafeCheckpointError(_refusal(what, path, e, allowed)) from None
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, KeyError, ... for damaged files
        raise _unreadable(what, path, e) from e
