"""``python -m unimiss_monai samples --out DIR``: write every demo data set, each with a decathlon-style datalist.

Layout of ``DIR`` (the contract every bundle relies on)::

    DIR/samples.json              {"datasets": {"<name>": {"path": "<sub>", "datalist": "<sub>/datalist.json", ...}}}
    DIR/<sub>/...                 one folder per data set, written by its builder

A bundle run with ``--dataset_dir DIR`` calls :func:`find_dataset` with its own data-set name and gets ``DIR/<sub>``;
given a folder without ``samples.json`` (the user's own data) it gets the folder itself.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

MANIFEST = "samples.json"

# data-set name -> "module:function"; each builder is called as build(out_dir: Path, synthetic: bool) -> dict
# and returns the manifest entry for its data set ({"datalist": relative path, "source": "real"|"synthetic", ...}).
BUILDERS: dict[str, str] = {
    "drr_generation": "unimiss_monai.data.sample_sets.drr_generation:build",
}


def _write_json_atomic(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def samples(out: str = "samples", synthetic: bool = False, only: str | list[str] | None = None) -> str:
    """Write the demo data sets to ``out`` and return its path.

    Args:
        out: output folder (created). Re-running updates it in place.
        synthetic: use generated phantoms even where the real CT / radiograph are installed (fast, for tests).
        only: a data-set name or list of names to build (default: all of ``BUILDERS``).
    """
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(BUILDERS) if only is None else ([only] if isinstance(only, str) else list(only))
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise ValueError(f"samples: unknown data set(s) {unknown}; choose from {sorted(BUILDERS)}")
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"datasets": {}}
    for name in names:
        module_name, func_name = BUILDERS[name].split(":")
        start = time.perf_counter()
        entry = getattr(importlib.import_module(module_name), func_name)(out_dir, synthetic)
        manifest["datasets"][name] = entry
        _write_json_atomic(manifest_path, manifest)
        logger.info("samples: %s ready in %.1f s (%s)", name, time.perf_counter() - start, entry.get("path", ""))
        print(f"[samples] {name}: {out_dir / entry.get('path', '')}  ({entry.get('source', '?')})", flush=True)
    return str(out_dir)


def find_dataset(dataset_dir: str | os.PathLike, name: str) -> str:
    """Folder of data set ``name`` inside a ``samples`` output, or ``dataset_dir`` itself for the user's own data."""
    root = Path(dataset_dir).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset_dir {str(root)!r} does not exist; create it with `python -m unimiss_monai samples --out {root}` or point --dataset_dir at your data")
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        return str(root)
    datasets = json.loads(manifest_path.read_text()).get("datasets", {})
    if name not in datasets:
        raise KeyError(f"{manifest_path} has no data set {name!r} (it has {sorted(datasets)}); re-run `python -m unimiss_monai samples --out {root}`")
    return str(root / datasets[name].get("path", name))
