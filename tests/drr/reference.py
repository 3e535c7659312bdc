"""Slow, independent numpy references for the DRR tests."""

from __future__ import annotations

import numpy as np


def siddon_numpy(mu: np.ndarray, affine: np.ndarray, source: np.ndarray, pixel: np.ndarray) -> float:
    """Line integral from world ``source`` to world ``pixel``: all voxel-face crossings in world space, sorted."""
    inv = np.linalg.inv(affine)
    s = inv[:3, :3] @ source + inv[:3, 3]
    t = inv[:3, :3] @ pixel + inv[:3, 3]
    cuts = [0.0, 1.0]
    for ax in range(3):
        if t[ax] != s[ax]:
            faces = np.arange(mu.shape[ax] + 1) - 0.5
            cuts.extend(((faces - s[ax]) / (t[ax] - s[ax])).tolist())
    cuts = np.unique(np.clip(cuts, 0.0, 1.0))
    total = 0.0
    length = np.linalg.norm(pixel - source)
    for a0, a1 in zip(cuts[:-1], cuts[1:]):
        mid = s + 0.5 * (a0 + a1) * (t - s)
        idx = np.round(mid).astype(int)
        if np.all(idx >= 0) and np.all(idx < mu.shape):
            total += (a1 - a0) * length * mu[tuple(idx)]
    return total


def box_chord(lo: np.ndarray, hi: np.ndarray, source: np.ndarray, pixel: np.ndarray) -> float:
    """Analytic length (mm) of the segment source->pixel inside the world axis-aligned box [lo, hi]."""
    d = pixel - source
    a0, a1 = 0.0, 1.0
    for ax in range(3):
        if d[ax] == 0:
            if not lo[ax] <= source[ax] <= hi[ax]:
                return 0.0
            continue
        u, v = sorted(((lo[ax] - source[ax]) / d[ax], (hi[ax] - source[ax]) / d[ax]))
        a0, a1 = max(a0, u), min(a1, v)
    return max(0.0, a1 - a0) * float(np.linalg.norm(d))


def sphere_chord(center: np.ndarray, radius: float, source: np.ndarray, pixel: np.ndarray) -> float:
    """Analytic chord length (mm) of the line source->pixel through a sphere."""
    d = (pixel - source) / np.linalg.norm(pixel - source)
    oc = source - center
    b = d @ oc
    disc = b * b - (oc @ oc - radius**2)
    return 2.0 * np.sqrt(disc) if disc > 0 else 0.0
