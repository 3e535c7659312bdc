"""The k-NN probe's data: its labelled items, read from a datalist section, and which pairs of them may not vote for
each other (another group, or crops of one case that overlap), so that a crop is never matched to a near-copy of
itself."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["load_probe_items", "probe_exclusion"]


def _boxes_intersect(a, b) -> bool:
    return all(a0 < b1 and b0 < a1 for a0, a1, b0, b1 in zip(a[0], a[1], b[0], b[1]))


def probe_exclusion(items: Sequence[dict], mode: str = "overlap") -> torch.Tensor:
    """``(N, N)`` bool mask of the pairs the probe must not match, from the items' ``group``, ``case`` and ``box``.

    Items of different groups (e.g. ``real`` and ``phantom``) are never neighbours. Within a group, ``mode``:
    ``"overlap"``: not a crop of the same case whose ``box`` (``[start, stop)`` voxel range) shares a voxel with
    the query's; ``"case"``: no crop of the same case at all (leave-one-case-out); ``"self"``: only the item itself
    (plain leave-one-out). Items without ``case`` never count as the same case; items of one case without ``box``
    are treated as overlapping under ``"overlap"`` (nothing tells they are disjoint).
    """
    if mode not in ("overlap", "case", "self"):
        raise ValueError(f"KNNProbe: exclude must be 'overlap', 'case' or 'self', got {mode!r}")
    n = len(items)
    groups = [item.get("group") for item in items]
    mask = torch.tensor([[groups[i] != groups[j] for j in range(n)] for i in range(n)], dtype=torch.bool)
    if mode == "self":
        return mask
    cases = [item.get("case") for item in items]
    for i in range(n):
        for j in range(n):
            if i == j or cases[i] is None or cases[i] != cases[j]:
                continue
            if mode == "case":
                mask[i, j] = True
            else:
                a, b = items[i].get("box"), items[j].get("box")
                mask[i, j] = a is None or b is None or _boxes_intersect(a, b)
    return mask


def load_probe_items(probe_data: str | os.PathLike | Sequence[dict] | None, key: str = "probe") -> list[dict]:
    """Probe items ``[{"image": path, "label": int | str}]``, from a list or from the ``key`` section of a datalist
    JSON (relative paths resolved against its folder). A missing file or section gives an empty list."""
    if probe_data is None:
        return []
    if isinstance(probe_data, (str, os.PathLike)):
        path = Path(probe_data)
        if not path.is_file():
            return []
        raw = json.loads(path.read_text()).get(key) or []
        items = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
                raise ValueError(f"{path}: {key}[{i}] must be {{'image': path, 'label': int or str}}, got {entry!r}")
            items.append({**entry, "image": str((path.parent / entry["image"]).resolve())})
        return items
    return [dict(item) for item in probe_data]
