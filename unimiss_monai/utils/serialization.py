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


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint", allowed: Sequence[type] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, also accepting the classes in ``allowed``.

    Args:
        path: the file.
        what: how the error names the file (``"pretrained checkpoint"``, ``"convert-checkpoint: source"``, ...).
        allowed: extra classes the file may hold (e.g. ``[argparse.Namespace]``); nothing else is unpickled.

    Raises:
        UnsafeCheckpointError: the file holds any other class or function; the message names it. Nothing from the
            file has run.
        UnreadableCheckpointError: the file is not a readable torch file (truncated, another format).
    """
    path = os.fspath(path)
    try:
        with torch.serialization.safe_globals(list(allowed)), warnings.catch_warnings():
            # torch warns about pickle protocols it was not written with, also on the files it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" not in str(e).lower():
            raise UnreadableCheckpointError(f"{what} {path!r} is not a readable torch file ({_first_line(e)})") from e
        # torch's own message spans a dozen lines and suggests weights_only=False: replaced, not chained
        raise UnsafeCheckpointError(_refusal(what, path, e, allowed)) from None
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... for damaged files
        raise UnreadableCheckpointError(f"{what} {path!r} is not a readable torch file ({_first_line(e)})") from e
