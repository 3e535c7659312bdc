"""Curves of a training that alternates phases (CT, X-ray), as the loss pictures draw them.

A phase switch changes which terms are summed into ``loss`` and what the teacher sees, so a value of one phase says
nothing about the other's: each phase of a term is a line of its own (:func:`phase_series`, in its own line style),
averaged over that phase's iterations only, and the blocks of each phase are shaded with its name where they are few
enough to read. Points are ``[iteration, value]`` or ``[iteration, value, phase]``
(``loss_curves.json``); curves written before the phase was recorded are one block of unknown phase. Beside points
of a recorded phase (a run resumed across the version that began recording them), phase-less points are a line of
their own in a neutral style, named as such in the legend: they are not put into a phase the file does not give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["PHASE_LABELS", "PHASE_STYLES", "UNRECORDED_STYLE", "Segment", "draw_phase_lines", "finite_points",
           "line_style", "moving_average", "phase_blocks", "phase_lines", "phase_series", "phase_styles", "points",
           "shade_phases"]

#: how each phase is named in a picture, and its background shade (light, so every curve colour reads on it)
PHASE_LABELS = {"ct": ("CT", "#fbe3c8"), "xray": ("X-ray", "#d6e6f5")}
#: the line style of each phase: a term keeps its colour in every phase, its phase shows in the line
PHASE_STYLES = {"ct": "-", "xray": "--"}
#: the line style of points without a phase beside points with one: neither phase's, as their phase is unknown
UNRECORDED_STYLE = ":"
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


def finite_points(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of ``(x, y)`` whose value is finite (no NaN or infinity)."""
    keep = np.isfinite(y)
    return x[keep], y[keep]


def phase_lines(values: Sequence, finite: bool = False) -> list[Segment]:
    """:func:`phase_series` of one curve's points; ``finite``: NaN and infinite values left out (a caller that draws
    only the finite values says the others in words)."""
    lines = phase_series(*points(values))
    return [(*finite_points(x, y), phase) for x, y, phase in lines] if finite else lines


def line_style(phase: str | None, phases: Sequence[str | None]) -> str:
    """The line style of ``phase`` in a picture of ``phases``: a point without a phase is drawn in
    :data:`UNRECORDED_STYLE` where some points have one, and solid where none has (the whole curve is one)."""
    if phase is None:
        return UNRECORDED_STYLE if any(p is not None for p in phases) else "-"
    return PHASE_STYLES.get(phase, "-")


def draw_phase_lines(ax, lines: Sequence[Segment], window: int, colour, phases: Sequence[str | None],
                     label: str | None = None, lw: tuple[float | None, float | None] = (None, None),
                     faint: float = 0.25) -> bool:
    """Draw one term's :func:`phase_lines` on ``ax`` in ``colour``, each in its :func:`line_style`: the raw values
    (alpha ``faint``, a dot for a single point) under their centred moving average over ``window`` of that phase's
    points; where ``window`` is 1 the raw line alone, at full strength. ``phases``: those of the whole picture.
    ``lw``: the widths of the raw and the averaged lines (None: matplotlib's). ``label`` names the first line's
    average (its raw line where it has none) in the legend. Returns whether an average was drawn."""
    averaged = False
    for n, (x, y, phase) in enumerate(lines):
        style, name = line_style(phase, phases), None if n else label
        smooth = window > 1 and len(y) > 1  # an average of one point is no line
        ax.plot(x, y, style, lw=lw[0], alpha=faint if window > 1 else 1.0, color=colour,
                marker="." if len(y) == 1 else None, label=None if smooth else name)
        if smooth:
            ax.plot(x, moving_average(y, window), style, lw=lw[1], color=colour, label=name)
            averaged = True
    return averaged


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
    """Legend entries of the line style of each of ``phases`` (``CT phase`` solid, ``X-ray phase`` dashed, and
    ``phase not recorded`` dotted beside a recorded one); none for one phase alone."""
    from matplotlib.lines import Line2D

    known = [p for p in dict.fromkeys(phases) if p is not None]
    unrecorded = None in phases and bool(known)
    if len(known) + unrecorded < 2:
        return []
    names = [PHASE_LABELS.get(p, (p,))[0] + " phase" for p in known] + ["phase not recorded"] * unrecorded
    return [Line2D([], [], color="dimgray", ls=line_style(p, phases), label=name)
            for p, name in zip(known + [None] * unrecorded, names)]
