"""What a training checkpoint records of the run that wrote it, beside its state (the training items, what chooses
the best model), as plain values, and how a rerun's differ: a run of other data, or one whose best model would be
chosen otherwise, is another run (see :class:`~unimiss_monai.handlers.TrainingCheckpoint`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime

from unimiss_monai.handlers.pretrained_init import resolve_pretrained_path
from unimiss_monai.utils.args import optional_path

__all__ = ["choice_record", "other_choice", "other_items", "plain"]


def plain(value):
    """``value`` as JSON-like plain values (numpy numbers as Python ones, tuples as lists), a string or path naming an
    existing file as that file's real path (relative from another folder, or through a link, it is the same file)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, os.PathLike)) and os.path.exists(value):
        return os.path.realpath(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy or torch scalar
        return value.item()
    return str(value)


def other_items(saved: Sequence | None, ours: Sequence | None, what: str = "training items") -> str | None:
    """How the items a checkpoint recorded (``saved``) differ from this run's, e.g. ``"other training items (1 new, 1
    gone of 4; e.g. ... is new)"``, or None: the same items in any order, or either side without a record."""
    if saved is None or ours is None:
        return None
    theirs, mine = (sorted(json.dumps(i, sort_keys=True) for i in items) for items in (saved, ours))
    if theirs == mine:
        return None
    gone, new = sorted(set(theirs) - set(mine)), sorted(set(mine) - set(theirs))
    example = f"e.g. {(new or gone)[0][:120]} is {'new' if new else 'gone'}" if new or gone else "some listed twice"
    return f"other {what} ({len(new)} new, {len(gone)} gone of {len(saved)}; {example})"


def _file(given) -> dict | None:
    """The weights file ``given`` names (as the fine-tune loads it: a file, or a bundle or run folder holding one) as
    its real path, size and modification time: the file the encoder started from, told apart from another one at the
    same place (a new pretraining published there) without reading its bytes. None: no weights (``null``)."""
    if optional_path(given) is None:
        return None
    try:
        path = resolve_pretrained_path(optional_path(given))
    except FileNotFoundError:  # the run that loads it says so; recorded as given
        return {"file": str(given)}
    st = os.stat(path)
    return {"file": os.path.realpath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def choice_record(choice: Mapping) -> dict:
    """What chooses a fine-tune's best model, as its checkpoint keeps it: ``choice``'s ``"validation"`` items (files as
    their real paths), ``"pretrained"`` weights file (path, size and time; None: trained from scratch) and
    ``"key_metric"`` name, whichever it gives."""
    record = plain({k: v for k, v in choice.items() if k != "pretrained"})
    if "pretrained" in choice:
        record["pretrained"] = _file(choice["pretrained"])
    return record


def other_choice(saved: Mapping | None, ours: Mapping | None) -> str | None:
    """How what chose a checkpoint's best model (:func:`choice_record`) differs from what this run's would be chosen
    by, e.g. ``"other validation items (...)"``, or None: the same, or either side (an entry) without a record."""
    if not isinstance(saved, Mapping) or ours is None:
        return None
    if (items := other_items(saved.get("validation"), ours.get("validation"), "validation items")) is not None:
        return items
    if "pretrained" in saved and "pretrained" in ours and saved["pretrained"] != ours["pretrained"]:
        theirs, mine = (_said(side["pretrained"]) for side in (saved, ours))
        return f"other pretrained weights ({theirs}; this run: {mine})"
    if None not in (theirs := saved.get("key_metric"), mine := ours.get("key_metric")) and theirs != mine:
        return f"another key metric ({theirs}; this run: {mine})"
    return None


def _said(weights: Mapping | None) -> str:
    if weights is None:
        return "none, trained from scratch"
    if "size" not in weights:
        return f"{weights['file']}, missing"
    when = datetime.fromtimestamp(weights["mtime_ns"] / 1e9).isoformat(sep=" ", timespec="seconds")
    return f"{weights['file']} of {weights['size']} bytes, modified {when}"
