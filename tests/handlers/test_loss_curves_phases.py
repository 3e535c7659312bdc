"""LossCurvePlotter across the CT / X-ray switches: each point's phase recorded, and the picture's averages and lines
kept inside one phase."""

from __future__ import annotations

import json

import matplotlib.axes
from ignite.engine import Engine, Events

from unimiss_monai.handlers import LossCurvePlotter
from unimiss_monai.handlers.loss_curves import is_curves_json

PHASES = ["ct"] * 10 + ["xray"] * 10 + ["ct"] * 10  # three blocks, as epochs of 10 iterations would give


def _output(i, phases=PHASES):
    """A step function per phase: every value is 1.0 in the CT phase and 3.0 in the X-ray phase."""
    phase = phases[i - 1]
    value = 1.0 if phase == "ct" else 3.0
    return {"loss": value, "teacher_entropy": value, "phase": phase, "lr": 0.1}


def _run(tmp_path, first=1, phases=PHASES):
    engine = Engine(lambda e, b: _output(e.state.iteration, phases))
    engine.state.rank = 0
    LossCurvePlotter(tmp_path / "curves.png", smoothing=10).attach(engine)
    if first > 1:  # resumed in the middle: the checkpoint's iteration comes back before the first new one
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "iteration", first - 1))
    engine.run(range(len(phases)), max_epochs=1)  # the epoch ends at iteration 30 either way
    return json.loads((tmp_path / "curves.json").read_text())


def test_each_point_records_its_phase(tmp_path):
    history = _run(tmp_path)
    assert history["loss"] == [[i, _output(i)["loss"], PHASES[i - 1]] for i in range(1, 31)]
    assert is_curves_json(tmp_path / "curves.json")
    # the format before the phase was recorded is still this package's
    (tmp_path / "old.json").write_text(json.dumps({"loss": [[1, 2.0], [2, 1.5]]}))
    assert is_curves_json(tmp_path / "old.json")
    (tmp_path / "user.json").write_text(json.dumps({"loss": [[1, 2.0, 7]]}))
    assert not is_curves_json(tmp_path / "user.json")


def test_each_phase_is_a_line_of_its_own_averaged_over_its_own_iterations(tmp_path, monkeypatch):
    """A step function per phase smooths to exactly its per-phase values: the 10-point average never carries a
    value of the CT phase into the X-ray phase, and no line passes through a value of the other phase; the CT line
    joins the CT iterations of both CT blocks, in its own line style."""
    lines = []
    plot = matplotlib.axes.Axes.plot

    def record(self, x, y, *args, **kwargs):
        lines.append((list(x), [float(v) for v in y], args[0] if args else None))
        return plot(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    _run(tmp_path)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(lines) == 2 * 2 * 2  # two terms, raw and averaged, in each of two phases
    for x, y, style in lines:
        phase = {PHASES[int(i) - 1] for i in x}
        assert len(phase) == 1, x  # one phase's iterations, no other's
        assert len(x) == PHASES.count(next(iter(phase))), x  # all of them: the CT line spans both CT blocks
        assert y == [1.0 if phase == {"ct"} else 3.0] * len(x), (x, y)
        assert style == ("-" if phase == {"ct"} else "--"), style


def test_phases_alternating_every_iteration_still_draw_a_line_each(tmp_path, monkeypatch):
    """Phases switching at every iteration (the bundle alternates them by epoch or by iteration): a line a phase of
    each term, not a dot per iteration."""
    lines = []
    plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, x, y, *a, **k: lines.append(len(x)) or plot(self, x, y, *a, **k))
    _run(tmp_path, phases=["ct", "xray"] * 15)
    assert lines == [15] * 8  # two terms, raw and averaged, two phases


def test_a_resumed_run_keeps_the_phases_written_before_it(tmp_path):
    _run(tmp_path)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    written = json.loads((tmp_path / "curves.json").read_text())
    # the values before the resume point, told apart from what this run would record (x 10)
    earlier = {k: [[i, v * 10, phase] for i, v, phase in points[:14]] for k, points in written.items()}
    (resumed / "curves.json").write_text(json.dumps(earlier))
    history = _run(resumed, first=15)
    assert history["loss"] == earlier["loss"] + written["loss"][14:]
