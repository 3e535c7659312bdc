"""The warnings stored with a disk-cache entry (:class:`~unimiss_monai.data.disk_cache.DiskCacheDataset`), in a small
JSON file beside it, ``<entry>.warnings.json``, written only for an entry whose computation warned.

The entry itself is stored as entries always were, so a version that predates stored warnings reads a shared cache
as before, and a run's up-front check of a warm cache opens only these small files, never the entries' tensors.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from unimiss_monai.data.temporaries import temporary_beside

__all__ = ["WARNINGS_SUFFIX", "store_warnings", "stored_warnings", "warnings_path"]

logger = logging.getLogger(__name__)

#: what the name of an entry's warnings file adds to the entry's
WARNINGS_SUFFIX = ".warnings.json"


def warnings_path(entry: Path) -> Path:
    """The file of ``entry``'s warnings (which exists only where its computation warned)."""
    return entry.with_name(entry.name + WARNINGS_SUFFIX)


def store_warnings(entry: Path, said: list) -> None:
    """Keep ``said`` (``[logger, level, message]`` records) as ``entry``'s warnings, or remove the warnings an earlier
    entry of that name left where there are none: called before the entry is written, so an entry is never read with
    the warnings of another. Written to a temporary file and renamed into place, as the entry is."""
    path = warnings_path(entry)
    if not said:
        path.unlink(missing_ok=True)
        return
    tmp = temporary_beside(path)
    try:
        tmp.write_text(json.dumps(said), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def stored_warnings(entry: Path) -> list:
    """The ``[logger, level, message]`` records stored with ``entry``; none where it has no warnings file. A file that
    cannot be read is logged, naming it, and counts as none."""
    path = warnings_path(entry)
    try:
        said = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(said, list) and all(isinstance(s, list) and len(s) == 3 for s in said):
            return [[str(name), int(level), str(message)] for name, level, message in said]
        problem = "not a list of [logger, level, message]"
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError) as e:  # unreadable, or not JSON
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
    logger.warning("disk cache: %s cannot be read (%s), so the warnings of its entry are not said; delete it together "
                   "with %s to have the entry computed again", path, problem, entry.name)
    return []
