"""draw_phase_lines, the drawing of one term's per-phase lines that the loss pictures share."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from unimiss_monai.visualize.phase_curves import draw_phase_lines, phase_lines

VALUES = [[1, 1.0, "ct"], [2, 3.0, "ct"], [3, 5.0, "xray"], [4, float("nan"), "xray"], [5, 7.0, "xray"],
          [6, 2.0, "ct"]]


def _drawn(values, window, finite, **kwargs):
    ax = Figure().subplots()
    averaged = draw_phase_lines(ax, phase_lines(values, finite=finite), window, "tab:red", ["ct", "xray"], **kwargs)
    return averaged, [(line.get_xdata().tolist(), np.asarray(line.get_ydata()).tolist(), line.get_linestyle(),
                       line.get_alpha(), line.get_linewidth(), line.get_label()) for line in ax.get_lines()]


def test_each_phase_a_faint_raw_line_under_its_own_average():
    averaged, lines = _drawn(VALUES, 3, finite=True, label="loss", lw=(0.6, 1.6), faint=0.35)
    assert averaged
    assert lines == [
        ([1, 2, 6], [1.0, 3.0, 2.0], "-", 0.35, 0.6, "_child0"), ([1, 2, 6], [2.0, 2.0, 2.5], "-", None, 1.6, "loss"),
        ([3, 5], [5.0, 7.0], "--", 0.35, 0.6, "_child2"), ([3, 5], [6.0, 6.0], "--", None, 1.6, "_child3")]


def test_no_window_draws_the_raw_lines_alone_at_full_strength_and_keeps_what_is_asked():
    averaged, lines = _drawn(VALUES, 1, finite=False, label="loss")
    assert not averaged and [(x, style, alpha, label) for x, _, style, alpha, _, label in lines] == [
        ([1, 2, 6], "-", 1.0, "loss"), ([3, 4, 5], "--", 1.0, "_child1")]
    assert str([y for _, y, *_ in lines]) == str([[1.0, 3.0, 2.0], [5.0, float("nan"), 7.0]])  # NaN kept: not asked
