"""LossCurvePlotter, CollapseMonitor and TrainingCheckpoint on a plain ignite engine with scripted outputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ignite.engine import Engine, Events

from unimiss_monai.handlers import CollapseMonitor, LossCurvePlotter, TrainingCheckpoint, scalar_outputs


def _engine(outputs):
    it = iter(outputs)
    engine = Engine(lambda e, b: next(it))
    engine.state.rank = 0
    return engine


def test_scalar_outputs_keeps_numbers_only():
    assert scalar_outputs({"loss": 1.5, "phase": "ct", "skipped": 2, "flag": True}) == {"loss": 1.5, "skipped": 2.0}


def test_loss_curves_png_and_json(tmp_path):
    outs = [{"loss": 3.0 - 0.1 * i, "distill": 2.0, "teacher_entropy": 1.0, "phase": "ct"} for i in range(12)]
    engine = _engine(outs)
    LossCurvePlotter(tmp_path / "curves.png", smoothing=3).attach(engine)
    engine.run(range(12), max_epochs=1)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((tmp_path / "curves.json").read_text())
    assert [p[1] for p in history["loss"]] == [o["loss"] for o in outs]
    assert "phase" not in history


def _curves_run(tmp_path, loss_of, kill_at=None, write_every=4, terms=lambda i: {}, kill_after_save=None):
    """Epochs of 6 iterations, a checkpoint every 4 iterations, the plotter attached first (as the pretraining bundle
    lists it). ``kill_at``: the process dies in that iteration; ``kill_after_save``: right after the checkpoint of that
    iteration is saved. As with kill -9, the plotter's writing is taken away first, so nothing is written at the
    failure."""
    model = torch.nn.Linear(3, 2)
    plotter = LossCurvePlotter(tmp_path / "curves.png", write_every=write_every)

    def die():
        plotter.write = lambda engine=None: None
        raise KeyboardInterrupt

    def step(engine, batch):
        if engine.state.iteration == kill_at:
            die()
        return {"loss": loss_of(engine.state.iteration), **terms(engine.state.iteration)}

    engine = Engine(step)
    engine.state.rank = 0
    plotter.attach(engine)
    checkpoint = TrainingCheckpoint(tmp_path / "ckpt", {"model": model}, save_every=4)
    save = checkpoint.save

    def save_then_die(engine):
        save(engine)
        if engine.state.iteration == kill_after_save:
            die()

    checkpoint.save = save_then_die
    checkpoint.attach(engine)
    engine.run(range(6), max_epochs=3)


def _curve(tmp_path, term="loss"):
    return json.loads((tmp_path / "curves.json").read_text()).get(term)


def test_loss_curves_of_a_resumed_run_cover_the_whole_run(tmp_path):
    """Killed in iteration 11, after the checkpoint and the values of iteration 8: the resumed run keeps 1-8 of the
    first run and records 9-18 itself."""
    with pytest.raises(KeyboardInterrupt):
        _curves_run(tmp_path, lambda i: 100.0 + i, kill_at=11)
    assert [i for i, _ in _curve(tmp_path)] == list(range(1, 9))
    _curves_run(tmp_path, lambda i: 200.0 + i)
    history = _curve(tmp_path)
    assert [i for i, _ in history] == list(range(1, 19))
    assert [v for _, v in history] == [100.0 + i for i in range(1, 9)] + [200.0 + i for i in range(9, 19)]


def test_a_run_killed_right_after_a_checkpoint_leaves_no_gap(tmp_path, caplog):
    """The plotter comes first: the values of iteration 8 are written before its checkpoint, so a kill right after
    that checkpoint loses none of them."""
    with pytest.raises(KeyboardInterrupt):
        _curves_run(tmp_path, lambda i: 1.0, kill_after_save=8)
    _curves_run(tmp_path, lambda i: 2.0)
    assert [i for i, _ in _curve(tmp_path)] == list(range(1, 19)) and "no values for" not in caplog.text


def test_a_failed_picture_costs_neither_the_final_checkpoint_nor_the_export(tmp_path, monkeypatch):
    import matplotlib.figure

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    model = torch.nn.Linear(3, 2)
    engine = _engine([{"loss": 1.0}] * 3)
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)  # first, as in the pretraining bundle
    TrainingCheckpoint(tmp_path / "ckpt", {"model": model}, save_every=0, export_path=tmp_path / "model.pt",
                       export_fn=model.state_dict).attach(engine)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", no_space)
    with pytest.raises(OSError, match="No space left"):
        engine.run(range(3), max_epochs=1)
    assert torch.load(tmp_path / "ckpt" / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 3
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["model"]["weight"], model.weight)


def test_curves_of_an_earlier_version_are_continued_and_a_users_file_is_not(tmp_path):
    """Curves in the plotter's format, written before the record of written files existed, are this package's."""
    (tmp_path / "curves.json").write_text(json.dumps({"loss": [[1, 5.0], [2, 4.0]]}))
    from matplotlib.figure import Figure

    Figure().savefig(tmp_path / "curves.png")  # the picture that version drew
    engine = _engine([{"loss": 1.0}])
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    engine.run(range(1), max_epochs=1)
    assert _curve(tmp_path) == [[1, 1.0]] and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "curves.json").write_text(json.dumps({"loss": [["a", 1]]}))  # not the plotter's format
    engine = _engine([{"loss": 1.0}])
    LossCurvePlotter(tmp_path / "other" / "curves.png").attach(engine)
    with pytest.raises(FileExistsError, match="curves.json exists and was not written by unimiss_monai"):
        engine.run(range(1), max_epochs=1)


def test_a_gap_in_the_resumed_curves_is_logged(tmp_path, caplog):
    """Values written at epoch ends only (write_every 0): those of iterations 7-8 died with the run."""
    with pytest.raises(KeyboardInterrupt):
        _curves_run(tmp_path, lambda i: 1.0, kill_at=11, write_every=0)
    _curves_run(tmp_path, lambda i: 2.0, write_every=0)
    assert [i for i, _ in _curve(tmp_path)] == list(range(1, 7)) + list(range(9, 19))
    assert "loss curves: no values for iterations 7-8" in caplog.text


def test_a_new_run_replaces_an_earlier_runs_values_at_its_first_iteration(tmp_path):
    """An earlier finished run's values must not be taken for this run's when it is killed before its first
    checkpoint and resumed; a term seen only after the resume point leaves no empty curve behind."""
    _curves_run(tmp_path, lambda i: 100.0 + i, terms=lambda i: {"ct": 1.0} if i in (9, 10) else {})
    (tmp_path / "ckpt" / "checkpoint.pt").unlink()  # training anew in the same folder
    with pytest.raises(KeyboardInterrupt):
        _curves_run(tmp_path, lambda i: 200.0 + i, kill_at=2, terms=lambda i: {"ct": 1.0})
    assert _curve(tmp_path) == [[1, 201.0]] and _curve(tmp_path, "ct") == [[1, 1.0]]
    # values written at the end of epoch 1 (iteration 6), "ct" only at 5-6; killed in 7, resumed at checkpoint 4
    with pytest.raises(KeyboardInterrupt):
        _curves_run(tmp_path, lambda i: 300.0 + i, kill_at=7, write_every=0,
                    terms=lambda i: {"ct": 1.0} if i in (5, 6) else {})
    _curves_run(tmp_path, lambda i: 400.0 + i, write_every=0)  # records no "ct": the plot is drawn without it
    assert _curve(tmp_path, "ct") is None and (tmp_path / "curves.png").is_file()
    assert [v for _, v in _curve(tmp_path)] == [300.0 + i for i in range(1, 5)] + [400.0 + i for i in range(5, 19)]


def test_loss_curves_are_written_each_epoch_and_a_new_run_does_not_read_them(tmp_path):
    engine = _engine([{"loss": 1.0}, {"loss": 2.0}])
    seen = []
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(json.loads((tmp_path / "curves.json").read_text())))
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append((tmp_path / "curves.png").is_file()))
    engine.run(range(1), max_epochs=2)
    assert seen == [{"loss": [[1, 1.0]]}, False, {"loss": [[1, 1.0], [2, 2.0]]}, False]
    engine = _engine([{"loss": 5.0}])
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    engine.run(range(1), max_epochs=1)
    assert json.loads((tmp_path / "curves.json").read_text()) == {"loss": [[1, 5.0]]}


def test_collapse_monitor_flags_uniform_and_single_prototype(caplog):
    k = 64
    uniform = [{"teacher_entropy": math.log(k) * 0.999, "teacher_batch_entropy": math.log(k)}] * 3
    single = [{"teacher_entropy": 0.01, "teacher_batch_entropy": 0.001}] * 3
    healthy = [{"teacher_entropy": 1.5, "teacher_batch_entropy": 3.5}] * 3
    engine = _engine(healthy + uniform + single)
    monitor = CollapseMonitor(out_dim=k)
    monitor.attach(engine)
    engine.run(range(3), max_epochs=3)
    assert monitor.collapsed_epochs == [2, 3]
    assert engine.state.metrics["epoch/teacher_entropy"] == 0.01
    assert "uniform teacher" in caplog.text and "one prototype" in caplog.text


def test_checkpoint_round_trip_and_export(tmp_path):
    model = torch.nn.Linear(3, 2)
    engine = _engine([{}] * 4)
    ckpt = TrainingCheckpoint(tmp_path / "ckpt", {"model": model}, save_every=2, export_path=tmp_path / "model.pt", export_fn=model.state_dict)
    ckpt.attach(engine)
    engine.run(range(4), max_epochs=1)
    saved = torch.load(tmp_path / "ckpt" / "checkpoint.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 4 and torch.equal(saved["model"]["weight"], model.weight)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["model"]["bias"], model.bias)
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name != "checkpoint.pt"]  # no temp files left
    # resume: a fresh model and engine get the saved weights and position
    fresh = torch.nn.Linear(3, 2)
    engine2 = _engine([{}] * 4)
    TrainingCheckpoint(tmp_path / "ckpt", {"model": fresh}).attach(engine2)
    engine2.run(range(4), max_epochs=2)
    assert torch.equal(fresh.weight, model.weight) and engine2.state.iteration == 8


def test_a_checkpoint_holding_nan_is_not_resumed(tmp_path):
    model = torch.nn.Linear(3, 2)
    engine = _engine([{}] * 2)
    TrainingCheckpoint(tmp_path / "ckpt", {"model": model}, save_every=1).attach(engine)
    engine.run(range(2), max_epochs=1)
    path = tmp_path / "ckpt" / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["bias"][0] = float("nan")  # a checkpoint copied in from a run that diverged
    torch.save(ckpt, path)
    fresh = torch.nn.Linear(3, 2)
    before = fresh.weight.clone()
    engine = _engine([{}] * 2)
    TrainingCheckpoint(tmp_path / "ckpt", {"model": fresh}).attach(engine)
    with pytest.raises(RuntimeError, match=rf"^cannot resume from {path}: tensor model.bias holds NaN or Inf .* delete it"):
        engine.run(range(2), max_epochs=2)
    assert torch.equal(fresh.weight, before) and engine.state.iteration == 0


def test_export_is_written_only_by_a_finished_run(tmp_path):
    """The exported weights of an earlier finished run stay byte for byte while a new run saves checkpoints and when
    it dies; the new run's export replaces them only once it completes."""
    model = torch.nn.Linear(3, 2)
    (tmp_path / "model.pt").write_bytes(b"weights of an earlier finished run")
    seen = []

    def run(fail_at):
        engine = _engine([{}] * 4)
        TrainingCheckpoint(tmp_path / "ckpt", {"model": model}, save_every=1, export_path=tmp_path / "model.pt",
                           export_fn=model.state_dict).attach(engine)

        @engine.on(Events.ITERATION_COMPLETED)
        def _check(e):
            seen.append(((tmp_path / "ckpt" / "checkpoint.pt").is_file(), (tmp_path / "model.pt").read_bytes()))
            if e.state.iteration == fail_at:
                raise RuntimeError("killed")

        engine.run(range(4), max_epochs=1)

    with pytest.raises(RuntimeError, match="killed"):
        run(fail_at=3)
    assert seen and all(ok and data == b"weights of an earlier finished run" for ok, data in seen)
    assert (tmp_path / "model.pt").read_bytes() == b"weights of an earlier finished run"
    run(fail_at=None)  # resumes at iteration 3 and finishes
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["model"]["weight"], model.weight)


def test_epoch_loss_means_publish_each_term_per_epoch():
    from unimiss_monai.handlers import EpochLossMeans

    # epoch 1: two CT iterations with a CT-only term; epoch 2: X-ray iterations without it
    outs = [{"loss": 3.0, "volume": 1.0, "lr": 0.1, "total": 3.0, "center_norm": 0.5, "phase": "ct"},
            {"loss": 5.0, "volume": 2.0, "lr": 0.1, "total": 5.0, "center_norm": 0.5, "phase": "ct"},
            {"loss": 1.0, "distill": 1.0, "phase": "xray"}, {"loss": 2.0, "distill": 4.0, "phase": "xray"}]
    engine = _engine(outs)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update({"epoch/other": 1.0}))
    EpochLossMeans().attach(engine)
    seen = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(dict(e.state.metrics)))
    engine.run(range(2), max_epochs=2)
    # another handler's metrics under the same prefix are left alone
    assert seen == [{"epoch/other": 1.0, "epoch/loss": 4.0, "epoch/volume": 1.5}, {"epoch/other": 1.0, "epoch/loss": 1.5, "epoch/distill": 2.5}]


def test_loss_curves_keep_a_failed_run_failing(tmp_path):
    def step(engine, batch):
        if engine.state.iteration == 3:
            raise RuntimeError("data loader died")
        return {"loss": 1.0}

    engine = Engine(step)
    engine.state.rank = 0
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    with pytest.raises(RuntimeError, match="data loader died"):
        engine.run(range(5), max_epochs=1)
    assert (tmp_path / "curves.png").is_file()  # the curves up to the failure are still written


def test_loss_curves_let_later_handlers_see_a_failure(tmp_path):
    """A handler attached after the plotter (MONAI's StatsHandler logs a run's error, then raises it) still runs, and
    the error reaches the caller once, whoever raises it."""
    seen = []

    def step(engine, batch):
        raise RuntimeError("out of memory")

    engine = Engine(step)
    engine.state.rank = 0
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    engine.add_event_handler(Events.EXCEPTION_RAISED, lambda e, err: seen.append(str(err)))
    with pytest.raises(RuntimeError, match="out of memory"):
        engine.run(range(2), max_epochs=1)
    # ignite fires EXCEPTION_RAISED again when a handler raises (once from the epoch, once from the run)
    assert seen and set(seen) == {"out of memory"}


@pytest.mark.parametrize("name", ["curves.png", "curves.json"])
def test_loss_curves_never_replace_a_users_file(tmp_path, name):
    (tmp_path / name).write_text("mine")
    engine = _engine([{"loss": 1.0}])
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    with pytest.raises(FileExistsError, match=rf"{name} exists and was not written by unimiss_monai"):
        engine.run(range(1), max_epochs=1)
    assert engine.state.iteration == 0 and (tmp_path / name).read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_users_picture_beside_curves_of_an_earlier_version_stays(tmp_path):
    """The picture of curves written before the record of written files is the package's only if matplotlib drew it."""
    (tmp_path / "curves.json").write_text(json.dumps({"loss": [[1, 2.0]]}))
    (tmp_path / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\nmy own picture")
    engine = _engine([{"loss": 1.0}])
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    with pytest.raises(FileExistsError, match="curves.png exists and was not written by unimiss_monai"):
        engine.run(range(1), max_epochs=1)
    assert (tmp_path / "curves.png").read_bytes().endswith(b"my own picture")


def test_curves_edited_after_a_run_stop_the_next_one(tmp_path):
    """Curves a run wrote and the user then edited, still in the plotter's format, are the user's: not replaced."""
    engine = _engine([{"loss": 1.0}])
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    engine.run(range(1), max_epochs=1)
    (tmp_path / "curves.json").write_text(json.dumps({"loss": [[1, 0.25]]}))
    engine = _engine([{"loss": 1.0}])
    LossCurvePlotter(tmp_path / "curves.png").attach(engine)
    with pytest.raises(FileExistsError, match="curves.json was changed after unimiss_monai wrote it"):
        engine.run(range(1), max_epochs=1)
    assert json.loads((tmp_path / "curves.json").read_text()) == {"loss": [[1, 0.25]]}
