"""The pretraining datalist: ``ct`` (CT + DRR) and ``xray`` sections, or the CT-DRR pairs of the DRR bundle."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from unimiss_monai.data.datalists import missing_datalist

logger = logging.getLogger(__name__)

__all__ = ["load_pretraining_datalist"]


def _drr_bundle_pairs(raw: dict, path: Path) -> list[tuple[str, dict]]:
    """``ct`` entries from the ``training`` CT-DRR pairs that ``unimiss_drr_generation`` writes."""
    pairs = []
    for i, entry in enumerate(raw.get("training") or []):
        if not isinstance(entry, dict) or "ct" not in entry or "drr" not in entry:
            raise ValueError(f"{path}: training[{i}] needs 'ct' and 'drr' (the CT-DRR pairs of unimiss_drr_generation); give both or list the pair under 'ct' as {{\"image\": ..., \"drr\": ...}}")
        pairs.append((f"training[{i}]", {"image": entry["ct"], "drr": entry["drr"]}))
    return pairs


def load_pretraining_datalist(path: str | os.PathLike, require_drr: bool = True) -> dict[str, list[dict]]:
    """The ``ct`` and ``xray`` sections of a pretraining datalist, with paths made absolute and checked.

    Two layouts are read (relative paths are relative to the datalist's folder):

    - the pretraining datalist ``{"ct": [{"image": ct, "drr": drr}], "xray": [{"image": xray}]}``; either section
      may be missing, not both;
    - the ``datalist.json`` of the ``unimiss_drr_generation`` bundle run with ``slab_depth > 0``:
      ``{"training": [{"ct": slab, "drr": slab_drr, "view": ..., ...}], "testing": [...], "failures": [...]}``; each
      ``training`` pair becomes a ``ct`` entry. Both may be combined in one file.

    Args:
        path: the datalist JSON.
        require_drr: every ``ct`` entry needs an existing ``drr`` file (set False when DRRs are rendered on the fly).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_datalist(path, "create it with `python -m unimiss_monai samples` or point --dataset_dir at a "
                                     "folder holding datalist.json")
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"datalist {path} is not a JSON object; write {{\"ct\": [...], \"xray\": [...]}}")
    # (where, entry): messages name the entry as the file does
    sections = {section: [(f"{section}[{i}]", e) for i, e in enumerate(raw.get(section) or [])] for section in ("ct", "xray")}
    sections["ct"] += _drr_bundle_pairs(raw, path)
    if not sections["ct"] and not sections["xray"]:
        hint = ("; its 'testing' entries are whole-CT DRRs: run unimiss_drr_generation with --slab_depth > 0 for CT-DRR pairs"
                if raw.get("testing") else "; add at least one section with entries")
        raise ValueError(f"datalist {path} has no 'ct' or 'xray' entries (nor DRR-bundle 'training' pairs){hint}")
    out: dict[str, list[dict]] = {"ct": [], "xray": []}
    for section, entries in sections.items():
        for where, entry in entries:
            entry = {"image": entry} if isinstance(entry, str) else dict(entry)
            keys = ["image"] + (["drr"] if section == "ct" and require_drr else [])
            for key in keys:
                if key not in entry:
                    raise KeyError(f"{path}: {where} has no {key!r}; give its {key} file" + (" or set drr_on_the_fly=true to render DRRs" if key == "drr" else ""))
                entry[key] = str((path.parent / entry[key]).resolve())
                if not Path(entry[key]).exists():
                    raise FileNotFoundError(f"{path}: {where} {key} file {entry[key]} does not exist" + ("; render it or set drr_on_the_fly=true" if key == "drr" else ""))
            out[section].append(entry)
    drr_run = ("; for a DRR run's folder, in a copy of its datalist.json beside it, passed as --datalist (the DRR "
               "bundle rewrites its own)")
    for missing, alone, fix in (("xray", "CT", drr_run), ("ct", "X-rays", "")):
        if not out[missing]:  # a run of one phase only is what was asked for, or a section forgotten: said either way
            logger.warning("%s has no %r entries, so pretraining trains on %s alone; UniMiSS learns from CT and "
                           "X-rays: list them in a %r section%s", path, missing, alone, missing, fix)
    return out


def with_sample_index(sections: dict[str, list[dict]], slices_per_ct: int) -> dict[str, list[dict]]:
    """``sections`` with an ``index`` per item, unique over the data set: DeepCluster-v2 keeps one memory-bank entry
    per index. Each CT volume reserves ``slices_per_ct`` indices (one per slice of its sequence), the X-rays follow."""
    ct = [dict(d, index=i) for i, d in enumerate(sections.get("ct") or [])]
    offset = len(ct) * slices_per_ct
    return {**sections, "ct": ct, "xray": [dict(d, index=offset + i) for i, d in enumerate(sections.get("xray") or [])]}
