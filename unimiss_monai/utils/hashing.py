"""The sha256 of a file: the identity of weights and release archives (publish, package, download, studies); and of a
datalist with the files it names (the data a study trained and scored on)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["sha256_datalist", "sha256_file"]


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks so large weights need no memory of their size."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
