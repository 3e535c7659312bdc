"""Curves of a training that alternates phases (CT, X-ray), as the loss pictures draw them.

A phase switch changes which terms are summed into ``loss`` and what the teacher sees, so a value of one phase says
nothing about the other's: each phase of a term is a line of its own (:func:`phase_series`, in its own line style),
averaged over that phase's iterations only, and the blocks of each phase are shaded with its name where they are few
enough to read. Points are ``[iteration, value]`` or ``[iteration, value, phase]``
(``loss_curves.json``); curves written before the phase was recorded are one block of unknown phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["PHASE_LABELS", "PHASE_STYLES", "Segment", "moving_average", "phase_blocks", "phase_series", "phase_styles",
           "points", "shade_phases"]

#: how each phase is named in a picture, and its background shade (light, so every curve colour reads on it)
PHASE_LABELS = {"ct": ("CT", "#fbe3c8"), "xray": ("X-ray", "#d6e6f5")}
#: the line style of each phase: a term keeps its colour in every phase, its phase shows in the line
PHASE_STYLES = {"ct": "-", "xray": "--"}
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


def phase_series(x: np.ndarray, y: np.ndarray, phases: Sequence[str | None]) -> list[Segment]:
    """The points of one curve grouped by phase, each group in iteration order (phases in the order they first
    come): one line per phase, which joins that phase's own iterations across the other's blocks (its course over the
    run) and never passes through a value of the other phase. Curves without phases are one group."""
    marks = np.asarray([str(p) for p in phases], dtype=object)
    return [(x[marks == str(phase)], y[marks == str(phase)], phase) for phase in dict.fromkeys(phases)]


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


def phase_styles(phases: Sequence[str | None]) -> list:
    """Legend entries of the line style of each of ``phases`` (``CT phase`` solid, ``X-ray phase`` dashed); none for
    one phase alone."""
    from matplotlib.lines import Line2D

    known = [p for p in dict.fromkeys(phases) if p is not None]
    if len(known) < 2:
        return []
    return [Line2D([], [], color="dimgray", ls=PHASE_STYLES.get(p, ":"), label=PHASE_LABELS.get(p, (p,))[0] + " phase")
            for p in known]
