"""LossCurvePlotter across the CT / X-ray switches: each point's phase recorded, and the picture's averages and lines
kept inside one phase."""

from __future__ import annotations

import json

import matplotlib.axes
import pytest
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


def _phase_loader(mode="epoch", ct_epochs=2, length=3):
    """The bundle's data: a PhaseLoader alternating ``ct_epochs`` CT epochs (or iterations) with one X-ray one."""
    from unimiss_monai.data.loaders import PhaseLoader, SeededDataset, make_loader

    def loader(name):
        return make_loader(SeededDataset([{"i": i} for i in range(length)], [], name=name), 1, length)

    return PhaseLoader(loader("ct"), loader("xray"), mode=mode, ct_epochs=ct_epochs, xray_epochs=1, epoch_length=length)


def _loader_run(folder, loader, first=1, epochs=4):
    """Epochs of 3 iterations whose phase is the one ``loader`` gives (as the trainer positions it each epoch);
    ``first``: resumed at that iteration, the first of an epoch."""
    engine = Engine(lambda e, b: {"loss": float(e.state.iteration), "phase": b[0]})
    engine.state.rank = 0
    LossCurvePlotter(folder / "curves.png").attach(engine)
    if first > 1:
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "iteration", first - 1))
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "epoch", (first - 1) // 3))
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: loader.set_epoch(e.state.epoch, 0))
    engine.run(loader, max_epochs=epochs)
    return json.loads((folder / "curves.json").read_text())


@pytest.mark.parametrize("mode", ["epoch", "iteration"])
def test_a_run_resumed_across_the_upgrade_gives_the_earlier_points_their_phase(tmp_path, mode):
    """Points written before the phase was recorded ([iteration, value]) get the phase the run's PhaseLoader gives
    their iterations, which is the phase a run recording them from the start records: the json written has phases."""
    whole = _loader_run(tmp_path, _phase_loader(mode))
    assert {p[2] for p in whole["loss"]} == {"ct", "xray"}
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "curves.json").write_text(json.dumps({"loss": [p[:2] for p in whole["loss"][:6]]}))
    assert _loader_run(resumed, _phase_loader(mode), first=7) == whole


@pytest.mark.parametrize("settings", ["changed", "no phase loader"])
def test_earlier_points_keep_no_phase_where_the_run_cannot_tell_it(tmp_path, caplog, settings):
    """A rule that contradicts a recorded phase (the settings changed since), or data with no rule, does not give the
    phase-less points one: they stay [iteration, value], and the log says why."""
    (tmp_path / "curves.json").write_text(json.dumps({"loss": [[1, 1.0], [2, 2.0], [3, 3.0], [4, 4.0, "xray"],
                                                               [5, 5.0, "xray"], [6, 6.0, "xray"]]}))
    if settings == "changed":  # one CT epoch, then X-ray (as recorded at 4-6); now two CT epochs give 4-6 CT
        history = _loader_run(tmp_path, _phase_loader(ct_epochs=2), first=7, epochs=3)
        assert "give iteration 4 the ct phase where xray was recorded" in caplog.text
    else:
        history = _run(tmp_path, first=7, phases=["ct"] * 9)
        assert "the run's data is no PhaseLoader" in caplog.text
    assert history["loss"][:3] == [[1, 1.0], [2, 2.0], [3, 3.0]]
    assert "values of 3 iterations from 1 to 3" in caplog.text and "drawn as 'phase not recorded'" in caplog.text


def test_points_without_a_phase_beside_phased_ones_are_drawn_apart_and_named(tmp_path, monkeypatch):
    """Curves whose first points have no phase: those are a dotted line of their own, named in the legend, not a
    line in the CT style."""
    lines, legends = [], []
    plot, legend = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.legend

    def record(self, x, y, *args, **kwargs):
        lines.append((list(x), args[0] if args else None))
        return plot(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    monkeypatch.setattr(matplotlib.axes.Axes, "legend", lambda self, handles, **kw: legends.append(
        [(h.get_label(), h.get_linestyle()) for h in handles]) or legend(self, handles=handles, **kw))
    plotter = LossCurvePlotter(tmp_path / "curves.png")
    plotter.history["loss"] = [(1, 1.0), (2, 1.0), (3, 1.0, "ct"), (4, 1.0, "ct"), (5, 3.0, "xray"), (6, 3.0, "xray")]
    plotter.write()
    assert sorted(lines) == [([1.0, 2.0], ":")] * 2 + [([3.0, 4.0], "-")] * 2 + [([5.0, 6.0], "--")] * 2
    assert ("phase not recorded", ":") in legends[0] and ("CT phase", "-") in legends[0]
