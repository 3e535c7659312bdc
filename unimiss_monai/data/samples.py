"""``python -m unimiss_monai samples --out DIR``: write every demo data set, each with a decathlon-style datalist.

Layout of ``DIR`` (the contract every bundle relies on)::

    DIR/samples.json              {"datasets": {"<name>": {"path": "<sub>", "datalist": "<sub>/datalist.json", ...}}}
    DIR/<sub>/...                 one folder per data set, written by its builder

A bundle run with ``--dataset_dir DIR`` calls :func:`find_dataset` with its own data-set name and gets ``DIR/<sub>``;
given a folder without ``samples.json`` (the user's own data) it gets the folder itself.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
import shlex
import time
from pathlib import Path

from unimiss_monai.data.writers import save_json
from unimiss_monai.utils.errors import user_error_message
from unimiss_monai.utils.paths import check_no_symlink_loop

logger = logging.getLogger(__name__)

MANIFEST = "samples.json"

# data-set name -> "module:function"; each builder is called as build(out_dir: Path, synthetic: bool) -> dict
# and returns the manifest entry for its data set ({"datalist": relative path, "source": "real"|"synthetic", ...}).
BUILDERS: dict[str, str] = {
    "drr_generation": "unimiss_monai.data.sample_sets.drr_generation:build",
    "pretraining": "unimiss_monai.data.sample_sets.pretraining:build",
    "cxr_segmentation": "unimiss_monai.data.sample_sets.cxr_segmentation:build",
    "ct_segmentation": "unimiss_monai.data.sample_sets.ct_segmentation:build",
    "ct_classification": "unimiss_monai.data.sample_sets.ct_classification:build",
    "cxr_classification": "unimiss_monai.data.sample_sets.cxr_classification:build",
}


def _is_built(out_dir: Path, name: str, entry: dict | None, synthetic: bool) -> bool:
    if not entry or bool(entry.get("synthetic", False)) != bool(synthetic):
        return False
    # a builder that changed what it writes bumps its VERSION, so a folder written by an older one is rebuilt
    if entry.get("version") != getattr(importlib.import_module(BUILDERS[name].split(":")[0]), "VERSION", None):
        return False
    datalist = entry.get("datalist")
    return datalist is not None and (out_dir / datalist).is_file()


def _read_manifest(path: Path, fix: str) -> dict:
    """The manifest at ``path`` (``{"datasets": {}}`` when there is none); a file of that name that is not one (not
    JSON, or no ``datasets`` object) is refused in one line naming it and ``fix``, before anything is written."""
    if not path.exists() and not path.is_symlink():
        return {"datasets": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"not valid JSON ({err})"
    else:
        if isinstance(manifest, dict) and isinstance(manifest.get("datasets"), dict):
            return manifest
        problem = "no 'datasets' object"
    raise ValueError(f"{path} is not a samples manifest: {problem}; `python -m unimiss_monai samples` did not write it, "
                     f"{fix}")


def samples(
    out: str = "samples", synthetic: bool = False, only: str | list[str] | None = None, overwrite: bool = False
) -> str:
    """Write the demo data sets to ``out`` and return its path.

    A data set already present (same ``synthetic`` setting, datalist on disk) is kept, so a second run is quick.
    A builder that fails is reported and the others still run; the command then exits with an error.

    Args:
        out: output folder (created).
        synthetic: use generated phantoms even where the real CT / radiograph are installed (fast, for tests).
        only: a data-set name or list (or comma-separated string) of names to build (default: all of ``BUILDERS``).
        overwrite: rebuild data sets that are already present.
    """
    # fire hands a bare "--out" (its folder left out) in as True, and a number-like folder name as a number
    if not isinstance(out, (str, os.PathLike)):
        hint = "was its value left out?" if isinstance(out, bool) or out is None else "quote a number-like folder name"
        raise ValueError(f"samples: --out takes the folder to write into (e.g. --out samples), got {out!r}; {hint}")
    out_dir = Path(check_no_symlink_loop(Path(out).expanduser(), "--out")).resolve()
    if only is None:
        names = list(BUILDERS)
    elif isinstance(only, (str, list, tuple)):
        names = [n.strip() for n in only.split(",")] if isinstance(only, str) else list(only)
    else:  # a bare "--only" (True), or a number
        raise ValueError(f"samples: --only takes data-set names, e.g. --only drr_generation,pretraining; got {only!r}")
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:  # before the folder is made: a refused command leaves nothing behind
        raise ValueError(f"samples: unknown data set(s) {unknown}; choose from {sorted(BUILDERS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST
    manifest = _read_manifest(manifest_path, "and does not replace it: move it away or choose another --out")
    failures: dict[str, str] = {}
    for i, name in enumerate(names, 1):
        if not overwrite and _is_built(out_dir, name, manifest["datasets"].get(name), synthetic):
            print(f"[samples] {name}: already in {out_dir} (use --overwrite to rebuild)", flush=True)
            continue
        module_name, func_name = BUILDERS[name].split(":")
        print(f"[samples] {name}: building ({i} of {len(names)})", flush=True)  # some take a minute
        start = time.perf_counter()
        try:
            entry = getattr(importlib.import_module(module_name), func_name)(out_dir, synthetic)
        except Exception as e:  # one data set failing must not cost the user the others
            failures[name] = user_error_message(e) or f"{type(e).__name__}: {e}"
            if user_error_message(e) is None:  # a bug: its traceback is wanted; a user's mistake has its one line below
                logger.exception("samples: %s failed", name)
            print(f"[samples] {name}: FAILED: {failures[name]}", flush=True)
            continue
        entry["synthetic"] = bool(synthetic)
        manifest["datasets"][name] = entry
        save_json(manifest, manifest_path)
        elapsed = time.perf_counter() - start
        logger.info("samples: %s ready in %.1f s (%s)", name, elapsed, entry.get("path", ""))
        print(f"[samples] {name}: {out_dir / entry.get('path', '')}  ({entry.get('source', '?')}, {elapsed:.0f} s)", flush=True)
    if failures:
        raise RuntimeError(f"samples: {len(failures)} data set(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failures.items()))
    return str(out_dir)


def held_out_images(folder: str | os.PathLike) -> list[Path] | None:
    """The ``test`` images of ``folder`` when it is a data set of a ``samples`` output (named in the manifest of the
    folder above it, with a ``test`` split in its datalist), else ``None``.

    Inference on the demo data runs on these: the model was trained on the others, so their predictions say nothing.
    A data set with a training split but no readable test split is said in a warning, with the command that rebuilds it.
    """
    folder = Path(folder).resolve()  # "." or "x/.." has a parent to look in too, and so does a link to a data set
    try:
        datasets = json.loads((folder.parent / MANIFEST).read_text())["datasets"]
        names = [n for n, e in datasets.items() if (folder.parent / e.get("path", n)).resolve() == folder]
        name = folder.name if folder.name in names else names[0]  # two names of one folder: the folder's own first
        entry = datasets[name]
        datalist = folder.parent / entry["datalist"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None  # not a data set of a samples output: the user's own folder
    try:
        splits = json.loads(datalist.read_text())
        if "test" not in splits and "training" not in splits:
            return None  # a data set without these splits (DRR generation, pretraining): all of it is input
        return [datalist.parent / item["image"] for item in splits["test"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        synthetic = " --synthetic true" if entry.get("synthetic") else ""
        logger.warning("%s is data set %r of a samples output, but its test split cannot be read (%s: %s): images "
                       "the model was chosen or trained on are taken instead; rebuild it with `python -m unimiss_monai "
                       "samples --out %s --only %s%s --overwrite true`", folder, name, type(err).__name__, err,
                       folder.parent, name, synthetic)
        return None


def _existing_name_like(path: Path) -> Path | None:
    """A file or folder beside the missing ``path`` named almost like it (``sample`` for ``samples``), as typed; a
    mistyped name would otherwise be offered the command that builds a second sample set there."""
    try:
        names = [entry.name for entry in path.parent.iterdir()]
    except OSError:  # the parent is missing or unreadable too: nothing to offer
        return None
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.8)
    return path.parent / close[0] if close else None


def find_dataset(dataset_dir: str | os.PathLike, name: str) -> str:
    """Folder of data set ``name`` inside a ``samples`` output, or ``dataset_dir`` itself for the user's own data."""
    root = Path(check_no_symlink_loop(Path(dataset_dir).expanduser(), "dataset_dir"))
    if not root.exists():
        like = _existing_name_like(root)
        hint = f"did you mean {like}? If not, create" if like else "create"
        raise FileNotFoundError(f"dataset_dir {str(root)!r} does not exist; {hint} it with `python -m unimiss_monai "
                                f"samples --out {shlex.quote(str(root))}` or point --dataset_dir at your data")
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        return str(root)
    datasets = _read_manifest(manifest_path, f"so --dataset_dir {root} is not its output: move the file away from "
                                             "your data, or point --dataset_dir at a samples folder")["datasets"]
    if name not in datasets:
        raise KeyError(f"{manifest_path} has no data set {name!r} (it has {sorted(datasets)}); re-run `python -m unimiss_monai samples --out {shlex.quote(str(root))}`")
    return str(root / datasets[name].get("path", name))
