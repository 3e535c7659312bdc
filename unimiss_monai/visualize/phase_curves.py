"""Curves of a training that alternates phases (CT, X-ray), as the loss pictures draw them.

A phase switch changes which terms are summed into ``loss`` and what the teacher sees, so a value before a switch says
nothing about one after it: a line is split at every switch, a moving average restarts in each block of one phase,
and the blocks are shaded with the phase's name. Points are ``[iteration, value]`` or ``[iteration, value, phase]``
(``loss_curves.json``); curves written before the phase was recorded are one block of unknown phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["PHASE_LABELS", "Segment", "moving_average", "phase_blocks", "points", "segments", "shade_phases"]

#: how each phase is named in a picture, and its background shade (light, so every curve colour reads on it)
PHASE_LABELS = {"ct": ("CT", "#fbe3c8"), "xray": ("X-ray", "#d6e6f5")}
#: more blocks than this are not shaded one by one (phases alternating by iteration): the picture would be a blur
MAX_SHADED_BLOCKS = 60

Block = tuple[float, float, "str | None"]  # first iteration, last iteration, phase
Segment = tuple[np.ndarray, np.ndarray, "str | None"]  # iterations, values, phase


def points(values: Sequence) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Iterations, values and phases of one curve's points (a point without a phase has ``None``); malformed
    points are left out."""
    kept = [p for p in values if isinstance(p, (list, tuple)) and len(p) in (2, 3) and p[1] is not None]
    x = np.asarray([float(p[0]) for p in kept], dtype=np.float64)
    y = np.asarray([float(p[1]) for p in kept], dtype=np.float64)
    return x, y, [p[2] if len(p) == 3 and isinstance(p[2], str) else None for p in kept]


def phase_blocks(curves: Mapping[str, Sequence]) -> list[Block]:
    """The runs of consecutive iterations of one phase over all curves, in order: one block per phase between two
    switches. Curves without phases give one block."""
    phase_at: dict[float, str | None] = {}
    for values in curves.values():
        x, _, phases = points(values)
        phase_at.update((i, ph) for i, ph in zip(x.tolist(), phases) if ph is not None or i not in phase_at)
    blocks: list[list] = []
    for it in sorted(phase_at):
        if blocks and blocks[-1][2] == phase_at[it]:
            blocks[-1][1] = it
        else:
            blocks.append([it, it, phase_at[it]])
    return [(a, b, ph) for a, b, ph in blocks]


def segments(x: np.ndarray, y: np.ndarray, blocks: Sequence[Block]) -> list[Segment]:
    """The points of one curve cut into its parts inside each block (a curve absent from a block has no part
    there, so no line crosses the other phase's block either)."""
    out = []
    for first, last, phase in blocks:
        inside = (x >= first) & (x <= last)
        if inside.any():
            out.append((x[inside], y[inside], phase))
    return out


def moving_average(y: np.ndarray, n: int) -> np.ndarray:
    """Centred mean of ``y`` over ``n`` points, over fewer at the ends (no padding that invents values); ``n`` <= 1
    returns ``y``. Apply it to one block's values: it averages whatever it is given."""
    y = np.asarray(y, dtype=np.float64)
    if n <= 1 or len(y) < 2:
        return y
    total = np.concatenate([[0.0], np.cumsum(y)])
    i = np.arange(len(y))
    lo, hi = np.maximum(0, i - n // 2), np.minimum(len(y), i - n // 2 + n)
    return (total[hi] - total[lo]) / (hi - lo)


def shade_phases(ax, blocks: Sequence[Block], label: bool = True) -> bool:
    """Shade each block of a known phase on ``ax`` in its colour (named at its top when ``label`` and it is wide
    enough to read); returns whether anything was shaded (not for one phase alone, nor for too many blocks)."""
    known = [b for b in blocks if b[2] is not None]
    if len({b[2] for b in known}) < 2 or len(blocks) > MAX_SHADED_BLOCKS:
        return False
    span = max(blocks[-1][1] - blocks[0][0], 1.0)
    for k, (first, last, phase) in enumerate(blocks):
        if phase is None:
            continue
        name, shade = PHASE_LABELS.get(phase, (phase, "#e6e6e6"))
        # each block reaches half-way to its neighbours', so the shading has no gaps between iterations
        left = first - 0.5 if k == 0 else (blocks[k - 1][1] + first) / 2
        right = last + 0.5 if k == len(blocks) - 1 else (last + blocks[k + 1][0]) / 2
        ax.axvspan(left, right, color=shade, alpha=0.6, lw=0, zorder=0)
        if label and (right - left) / span > 0.06:
            ax.text((left + right) / 2, 0.98, name, transform=ax.get_xaxis_transform(), ha="center", va="top",
                    fontsize=7, color="dimgray")
    return True
