"""The report's pretraining loss figure across the CT / X-ray switches: what it draws, and the caption that says so."""

from __future__ import annotations

import json

import matplotlib.axes
import pytest

from unimiss_monai.report.document import Figure
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.pretraining import pretraining_section


def _phased(n_per_block, blocks=("ct", "xray", "ct"), phases=True):
    """Curves whose every term is a step function: 1.0 in each CT block, 3.0 in each X-ray block."""
    curves = {"loss": [], "distill": [], "teacher_entropy": []}
    it = 0
    for phase in blocks:
        for _ in range(n_per_block):
            it += 1
            for term in curves:
                value = 1.0 if phase == "ct" else 3.0
                curves[term].append([it, value, phase] if phases else [it, value])
    return curves


@pytest.fixture
def drawn(monkeypatch):
    """Every line drawn on an Axes: (x, y, keyword arguments)."""
    lines = []
    plot = matplotlib.axes.Axes.plot

    def record(self, *args, **kwargs):
        data = [a for a in args if not isinstance(a, str)]
        if len(data) >= 2:  # the line style too, as "fmt"
            fmt = next((a for a in args if isinstance(a, str)), None)
            lines.append(([float(v) for v in data[0]], [float(v) for v in data[1]], {**kwargs, "fmt": fmt}))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    return lines


def _section(tmp_path, curves):
    pre = tmp_path / "unimiss_pretraining"
    pre.mkdir(exist_ok=True)
    (pre / "loss_curves.json").write_text(json.dumps(curves))
    figures = [b for b in pretraining_section(RunFolder(tmp_path)).blocks if isinstance(b, Figure)]
    return next(f for f in figures if f.name == "pretraining_losses")


def test_no_line_and_no_average_mixes_two_phases(tmp_path, drawn):
    """A step function per phase smooths to exactly its per-phase values: no line holds a value of the other phase
    (where the terms summed into loss differ), and each phase's line spans all its own iterations."""
    figure = _section(tmp_path, _phased(100))  # CT 200 iterations, X-ray 100: a moving average over 8
    assert drawn
    for x, y, kwargs in drawn:
        ct = [1 <= i <= 100 or i > 200 for i in x]
        assert all(ct) or not any(ct), (min(x), max(x))  # one phase's iterations
        assert len(x) == (200 if all(ct) else 100)
        assert y == [1.0 if all(ct) else 3.0] * len(x), sorted(set(y))[:5]
    smoothed = [line for line in drawn if line[2].get("lw") == 1.6]
    assert len(smoothed) == 2 * 2  # loss and distill, one average per phase
    assert "moving average over 8 of its phase's iterations" in figure.caption
    assert "CT and X-ray phases are drawn apart (CT solid, X-ray dashed)" in figure.caption
    assert "Shaded: the CT and X-ray phases" in figure.caption


def test_phases_switching_at_every_epoch_are_drawn_apart_unshaded(tmp_path, drawn):
    # the bundle's default alternates the phases by epoch: 100 blocks, too many to shade, one line a phase still
    figure = _section(tmp_path, _phased(4, blocks=("ct", "xray") * 50))
    assert sorted(len(x) for x, _, kwargs in drawn if kwargs.get("lw") == 1.6) == [200] * 4
    assert "moving average over 8 of its phase's iterations" in figure.caption
    assert "switch 99 times, too often to shade" in figure.caption


def test_the_caption_says_only_what_is_drawn(tmp_path, drawn):
    # 26 iterations: too few to smooth (a window of 1); one line per block, no bold average
    figure = _section(tmp_path, _phased(13, blocks=("ct", "xray")))
    assert not any(line[2].get("lw") == 1.6 for line in drawn)
    assert "smoothed" not in figure.caption and "moving average" not in figure.caption
    assert "too few iterations to smooth" in figure.caption and "CT and X-ray phases" in figure.caption


def test_curves_without_phases_are_one_phase(tmp_path, drawn):
    """loss_curves.json written before the phase was recorded ([iteration, value]) is read, drawn as one phase and
    said to be so."""
    figure = _section(tmp_path, _phased(100, phases=False))
    assert "record no phases" in figure.caption and "Shaded" not in figure.caption
    assert any(len(x) == 300 for x, _, _ in drawn)  # one line over all iterations, as before


def test_points_without_a_phase_beside_phased_ones_are_drawn_apart_and_said_to_be(tmp_path, drawn):
    """A run resumed across the version that began recording phases: its first points have none. The report reading
    the file alone cannot know their phase, so it draws them dotted, in neither phase, and the caption says so."""
    curves = _phased(50, blocks=("ct", "xray", "ct", "xray"))
    for values in curves.values():
        values[:60] = [p[:2] for p in values[:60]]  # iterations 1-60 written by the earlier version
    figure = _section(tmp_path, curves)
    style = {i: ":" if i <= 60 else "-" if 100 < i <= 150 else "--" for i in range(1, 201)}
    for x, _, kwargs in drawn:
        assert {style[int(i)] for i in x} == {kwargs["fmt"]}, (min(x), max(x), kwargs["fmt"])
    # raw and mean of the two loss terms, and the teacher entropy among the monitors
    assert sorted(len(x) for x, _, kwargs in drawn if kwargs["fmt"] == ":") == [60] * 5
    assert "Iterations 1-60 were written without their phase" in figure.caption
    assert "drawn dotted as phase not recorded, in neither phase" in figure.caption


def test_the_switches_counted_leave_out_the_span_without_a_phase(tmp_path, drawn):
    """Iterations 1-10 written without a phase, then 200 alternating by iteration: the caption counts the 199 switches
    between phases, not the boundary between the unrecorded span and the first phase."""
    curves = _phased(1, blocks=("ct",) * 10 + ("ct", "xray") * 100)
    for values in curves.values():
        values[:10] = [p[:2] for p in values[:10]]
    figure = _section(tmp_path, curves)
    assert "The phases switch 199 times, too often to shade" in figure.caption
