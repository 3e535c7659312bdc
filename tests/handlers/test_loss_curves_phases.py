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


def _terms(iteration, phase, marked=True):
    """A trainer's output: ``loss`` in both phases and, where ``marked``, a term of the CT phase alone (as the DRR
    distillation term of UniMiSS+)."""
    ct_only = {"drr_distill": -iteration} if marked and phase == "ct" else {}
    return {"loss": float(iteration), "phase": phase} | ct_only


def _loader_run(folder, loader, first=1, epochs=4, marked=True):
    """Epochs of 3 iterations whose phase is the one ``loader`` gives (as the trainer positions it each epoch);
    ``first``: resumed at that iteration, the first of an epoch."""
    engine = Engine(lambda e, b: _terms(e.state.iteration, b[0], marked))
    engine.state.rank = 0
    LossCurvePlotter(folder / "curves.png").attach(engine)
    if first > 1:
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "iteration", first - 1))
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "epoch", (first - 1) // 3))
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: loader.set_epoch(e.state.epoch, 0))
    engine.run(loader, max_epochs=epochs)
    return json.loads((folder / "curves.json").read_text())


def _unphased(curves, before):
    """The points of ``curves`` before iteration ``before``, as a version before the phase was recorded wrote them."""
    return {k: [p[:2] for p in values if p[0] < before] for k, values in curves.items()}


@pytest.mark.parametrize("mode", ["epoch", "iteration"])
def test_a_run_resumed_across_the_upgrade_gives_the_earlier_points_their_phase(tmp_path, mode):
    """Points written before the phase was recorded ([iteration, value]) get the phase their terms show once the
    resumed run has recorded both phases, which is the phase a run recording them from the start records."""
    whole = _loader_run(tmp_path, _phase_loader(mode))
    assert {p[2] for p in whole["loss"]} == {"ct", "xray"}
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "curves.json").write_text(json.dumps(_unphased(whole, 7)))
    assert _loader_run(resumed, _phase_loader(mode), first=7) == whole


def test_changed_phase_settings_on_the_first_resume_give_no_wrong_phase(tmp_path, caplog):
    """The first resume after the upgrade: the file records no phase, and ct_epochs changed since (1 then, 2 now).
    The CT term marks 1-3 CT. The settings would call 4-6 CT, their terms (lacking it) X-ray: 4-6 keep no phase, and
    the log names the disagreement. Terms alike in both phases tell nothing, for or against the settings: the points
    get the settings' phases, and a warning says that is an assumption, wrong if the settings changed (as here)."""
    old = _loader_run(tmp_path, _phase_loader(ct_epochs=1), epochs=2)
    assert [p[2] for p in old["loss"]] == ["ct"] * 3 + ["xray"] * 3
    for marked in (True, False):
        resumed = tmp_path / str(marked)
        resumed.mkdir()
        (resumed / "curves.json").write_text(json.dumps(_unphased(old, 7) if marked else
                                                        {"loss": [p[:2] for p in old["loss"]]}))
        caplog.clear()
        history = _loader_run(resumed, _phase_loader(ct_epochs=2), first=7, epochs=4, marked=marked)
        if marked:
            assert history["loss"][:6] == old["loss"][:3] + [p[:2] for p in old["loss"][3:6]]
            assert "give iteration 4 the ct phase where its terms, lacking the marks of that phase, point to the xray"\
                in caplog.text
            assert "values of 3 iterations from 4 to 6" in caplog.text and "terms do not tell it" in caplog.text
        else:
            assert history["loss"][:6] == [[*p[:2], "ct"] for p in old["loss"]]
            warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert any("values of 6 iterations from 1 to 6" in m and "That is an assumption" in m and
                       "if they changed since it was started, these phases are wrong" in m for m in warned), warned
        assert [p[2] for p in history["loss"][6:]] == ["xray"] * 3 + ["ct"] * 3  # this run's own: epochs 3, 4


def _iteration_phases(n, length=4):
    """Phases alternating two CT iterations and one X-ray one inside each epoch of ``length``: c c x c | c c x c,
    a pattern that differs between epochs when counted over the run's iterations."""
    from unimiss_monai.data.loaders import PhaseLoader

    loader = PhaseLoader(object(), object(), mode="iteration", ct_epochs=2, xray_epochs=1, epoch_length=length)
    return [loader.phase_at(i) for i in range(1, n + 1)]


def test_a_mid_epoch_resume_gives_each_earlier_point_the_phase_it_had(tmp_path):
    """Resumed at iteration 6, the second of an epoch of 4, in iteration mode: points 1-5 get the phase each had,
    though the pattern of the run's iterations does not repeat every 3 (c c x c | c c x c)."""
    phases = _iteration_phases(24)
    assert phases[:8] == ["ct", "ct", "xray", "ct"] * 2

    def run(folder, first=1):
        engine = Engine(lambda e, b: _terms(e.state.iteration, phases[e.state.iteration - 1]))
        engine.state.rank = 0
        LossCurvePlotter(folder / "curves.png").attach(engine)
        if first > 1:
            engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "iteration", first - 1))
        engine.run(_phase_loader("iteration", length=4), max_epochs=3)
        return json.loads((folder / "curves.json").read_text())

    whole = run(tmp_path)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / "curves.json").write_text(json.dumps(_unphased(whole, 6)))
    assert run(resumed, first=6)["loss"][:8] == whole["loss"][:8]


@pytest.mark.parametrize("settings", ["changed", "no phase loader"])
def test_earlier_points_keep_no_phase_where_the_run_cannot_tell_it(tmp_path, caplog, settings):
    """Terms alike in both phases do not give the phase-less points one, whatever the settings, nor does a term
    recorded by this run alone (teacher_entropy, absent from the earlier points whatever their phase): they stay
    [iteration, value], and the log says why; settings that contradict a recorded phase are named."""
    (tmp_path / "curves.json").write_text(json.dumps({"loss": [[1, 1.0], [2, 2.0], [3, 3.0], [4, 4.0, "xray"],
                                                               [5, 5.0, "xray"], [6, 6.0, "xray"]]}))
    if settings == "changed":  # one CT epoch, then X-ray (as recorded at 4-6); now two CT epochs give 4-6 CT
        history = _loader_run(tmp_path, _phase_loader(ct_epochs=2), first=7, epochs=3, marked=False)
        assert "give iteration 4 the ct phase where it was trained in the xray phase" in caplog.text
    else:
        history = _run(tmp_path, first=7, phases=["ct"] * 9)
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
