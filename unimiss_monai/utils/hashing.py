"""The sha256 of a file: the identity of weights and release archives (publish, package, download, studies), and of the
model an evaluation or inference ran (recorded in its JSON for the report); and of a datalist with the files it names
(the data a study trained and scored on)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

__all__ = ["PREDICTIONS_KEY", "SCORED_MODEL_KEY", "model_checksum", "sha256_datalist", "sha256_file"]

#: the key under which an evaluation or inference JSON records the SHA-256 of the model file it ran
SCORED_MODEL_KEY = "model_sha256"
#: the key under which a classifier's evaluation ``metrics.json`` records the SHA-256 of the per-case prediction
#: file written with it, which pairs the two
PREDICTIONS_KEY = "predictions_sha256"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks so large weights need no memory of their size."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_checksum(path: str | os.PathLike | None) -> str | None:
    """The SHA-256 of the model file ``path``, which an evaluation or inference JSON records (:data:`SCORED_MODEL_KEY`)
    to say which model it ran; ``None`` when ``path`` is ``None``, or no readable file (said in a warning: the report
    then judges those results by file times). A checksum, not the file's time: a copy of the folder (``cp -r``, a
    download) rewrites times, and a model retrained in place keeps its name."""
    if not path:
        return None
    try:
        return sha256_file(path)
    except OSError as err:
        logging.getLogger(__name__).warning("%s: no model checksum recorded (%s); the report will judge these results "
                                            "by file times", path, err.strerror or err)
        return None


def sha256_datalist(path: str | os.PathLike) -> str:
    """Hex sha256 of a datalist JSON and of every file its items name (any string value of an item, or in a list of
    an item, that is a file relative to the datalist's folder or absolute), in the order they appear: two data sets
    with the same file names but other contents get different digests."""
    path = Path(path)
    text = path.read_bytes()
    digest = hashlib.sha256(text)
    seen: set[Path] = set()

    def files(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from files(v)
        elif isinstance(value, dict):
            for v in value.values():
                yield from files(v)

    for section in json.loads(text).values():
        if not isinstance(section, list):
            continue
        for name in files([item for item in section if isinstance(item, dict)]):
            candidate = (path.parent / name).resolve()
            if candidate not in seen and candidate.is_file():
                seen.add(candidate)
                digest.update(f"{name}\0{sha256_file(candidate)}\0".encode())
    return digest.hexdigest()
