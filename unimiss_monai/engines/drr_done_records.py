"""Done records of batch DRR generation: what a rerun checks to skip a CT, and what the run datalist is merged from.

A CT ``<name>`` is finished when ``output_dir/<name>/<name>_done.json`` holds the settings it was rendered with, its
input files are as they were when it was read (size and modification time: a CT corrected or replaced in place is
rendered again) and every file it lists exists. The record is written last into the CT's staging folder, so it
appears with the outputs in one atomic rename (:func:`unimiss_monai.data.writers.staged_dir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from unimiss_monai.data.drr_run_folder import record_path

__all__ = ["input_signature", "listed_files", "merge_records", "is_finished", "record_path", "relative"]

logger = logging.getLogger(__name__)


def listed_files(record: dict) -> list[str]:
    """The files a done record or a CT's datalist lists (relative to the folder it is in)."""
    files = [item[key] for item in record["testing"] + record["training"]
             for key in ("image", "preview", "label", "drr") if key in item]
    return files + [item["ct"] for item in record["training"]]


#: detached image headers (a few lines of text) and the key that names the file(s) holding their voxels
_DETACHED_HEADERS = {".mhd": ("elementdatafile",), ".nhdr": ("data file", "datafile")}


def _data_files(header: Path) -> list[Path]:
    """The files holding the voxels of a detached ``.mhd``/``.nhdr`` header: the one it names, none for ``LOCAL``;
    for a list or a numbered pattern, every other file in its folder (a superset: a change there renders again)."""
    with open(header, "rb") as f:  # the header's first lines: a LOCAL .mhd holds its voxels after them
        lines = f.read(65536).decode(errors="replace").splitlines()
    keys = _DETACHED_HEADERS[header.suffix.lower()]
    for line in lines:
        key, sep, value = line.partition("=" if header.suffix.lower() == ".mhd" else ":")
        if not sep or key.strip().lower() not in keys:
            continue
        value = value.strip()
        if value.upper() == "LOCAL":
            return []
        if value.upper().startswith("LIST") or " " in value or "%" in value:
            return sorted(p for p in header.parent.iterdir() if p.is_file() and p != header)
        return [header.parent / value]
    return []


def _listing_signature(files: list[Path]) -> list:
    """``[total size, newest time, digest]`` of ``files``: every file's name, size and time is in the digest, so a file
    replaced by one of the same size and an older time (a copy that keeps times) still changes it."""
    listing = sorted((f.name, st.st_size, st.st_mtime_ns) for f, st in ((f, f.stat()) for f in files))
    digest = hashlib.sha256(repr(listing).encode()).hexdigest()
    return [sum(size for _, size, _ in listing), max((t for *_, t in listing), default=0), digest]


def input_signature(paths: list[Path | None]) -> list:
    """What a rerun compares with a done record to see that the inputs are unchanged, for each of ``paths``: a file's
    ``[size, modification time in ns]``; for a DICOM series folder or a detached ``.mhd``/``.nhdr`` header with its
    data file, ``[total size, newest time, digest of every file's name, size and time]``; ``None`` for a path that is
    ``None`` or absent. As JSON values: content hashes would read every CT of an archive again just to skip it."""
    out = []
    for path in paths:
        try:
            if path is None:
                out.append(None)
            elif path.is_dir():
                out.append(_listing_signature([Path(e.path) for e in os.scandir(path) if e.is_file()]))
            elif path.suffix.lower() in _DETACHED_HEADERS:
                out.append(_listing_signature([path, *_data_files(path)]))
            else:
                st = path.stat()
                out.append([st.st_size, st.st_mtime_ns])
        except OSError:  # absent: reading it fails the case, and the missing file is named there
            out.append(None)
    return out


def _inputs_as_paths(settings):
    """``settings`` with its input paths absolute: records before 0.3.6 kept them as typed (relative to the working
    folder of their run, and ``"None"`` for a CT without labels), so a rerun from that folder still matches them."""
    if not isinstance(settings, dict):
        return settings
    out = dict(settings)
    for key in ("ct", "labels"):
        value = out.get(key)
        out[key] = None if value in (None, "None") else os.path.abspath(value)
    return out


def _changed_since(record: dict, path: Path, inputs: list) -> bool:
    """Whether the inputs (signature ``inputs``) differ from those the record at ``path`` was rendered from. A record
    from before 0.3.6 keeps no signature: then an input written after the record is a change."""
    if "inputs" in record:
        return record["inputs"] != inputs
    written = path.stat().st_mtime_ns
    return any(isinstance(sig, list) and len(sig) > 1 and sig[1] > written for sig in inputs)


def is_finished(output_dir: Path, name: str, settings: dict, inputs: list | None = None) -> bool:
    """True when the CT ``name`` has a done record for ``settings`` whose input files had the signature ``inputs``
    (:func:`input_signature`; a record without one, from before it was kept, is taken as it is) and every file it
    lists exists."""
    path = record_path(output_dir, name)
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        logger.warning("%s: unreadable done record, rendering the CT again", path)
        return False
    if _inputs_as_paths(record.get("settings")) != _inputs_as_paths(settings):
        logger.info("%s: rendered with other settings, rendering it again", name)
        return False
    if inputs is not None and _changed_since(record, path, inputs):
        logger.info("%s: its CT or label map changed since it was rendered, rendering it again", name)
        return False
    return all((output_dir / f).is_file() for f in listed_files(record))


def merge_records(output_dir: Path, names: list[str], failures: list[dict]) -> dict:
    """The run datalist ``{"testing", "training", "failures"}`` from the done records of every CT in ``names`` that
    did not fail (rendered now or before)."""
    failed = {f["name"] for f in failures}
    run_list: dict[str, list] = {"testing": [], "training": [], "failures": failures}
    for name in names:
        if name not in failed:
            record = json.loads(record_path(output_dir, name).read_text())
            # the source CT by its absolute path (records before 0.3.6 kept it as typed, relative to the working
            # folder, from which alone they match: _inputs_as_paths)
            run_list["testing"].extend({**item, "ct": os.path.abspath(item["ct"])} if "ct" in item else item
                                       for item in record["testing"])
            run_list["training"].extend(record["training"])
    return run_list


def relative(value, root: Path, prefix: str = ""):
    """JSON-ready copy of ``value`` in which each ``Path`` under ``root`` becomes ``prefix/<path relative to root>``."""
    if isinstance(value, list):
        return [relative(v, root, prefix) for v in value]
    if isinstance(value, dict):
        return {k: relative(v, root, prefix) for k, v in value.items()}
    if isinstance(value, Path):
        try:
            return str(Path(prefix) / value.relative_to(root)) if prefix else str(value.relative_to(root))
        except ValueError:
            return str(value)
    return value
