"""PretrainingTrainer: gradient isolation, phase freezing, learning, exact resume, bad input."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Events

sys.path.insert(0, str(Path(__file__).parent))
from test_pretraining_toys import build_trainer, toy_items, toy_xray_items  # noqa: E402

from unimiss_monai.data.loaders import PhaseLoader, ResumableSampler, SeededDataset, make_loader  # noqa: E402
from unimiss_monai.engines.pretraining import SamplesLeftOut, log_export  # noqa: E402
from unimiss_monai.handlers.training_checkpoint import TrainingCheckpoint  # noqa: E402


# toy tensors: single-threaded (see the ``one_thread`` fixture in tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_teacher_gets_no_gradient_and_follows_student_by_ema():
    trainer, net, _, _ = build_trainer(max_epochs=2, n_xray=0, xray_data=[])  # 2 epochs of 2 iterations
    # a momentum that changes with the optimiser step, so that the test also sees which step's value is used
    momenta = {0: 0.9, 1: 0.7, 2: 0.5, 3: 0.3}
    trainer.momentum_schedule = momenta.__getitem__
    grads, steps = {}, []

    def record(engine):
        grads.update({n: p.grad for n, p in net.teacher.named_parameters()})
        grads["student_has_grad"] = any(p.grad is not None for p in net.student.parameters())

    from monai.engines.utils import IterationEvents

    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, record)
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: steps.append([e.state.optimizer_step, _snapshot(net.teacher)]))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: steps[-1].extend([_snapshot(net.student), _snapshot(net.teacher)]))
    trainer.run()
    assert grads.pop("student_has_grad")
    assert all(g is None for g in grads.values())
    assert all(not p.requires_grad for p in net.teacher.parameters())
    # every step: teacher_new = m * teacher_old + (1 - m) * student_new, m the schedule's value at that step
    assert [s[0] for s in steps] == [0, 1, 2, 3]
    for step, t_old, s_new, t_new in steps:
        m = momenta[step]
        for k in t_old:
            torch.testing.assert_close(t_new[k], m * t_old[k] + (1 - m) * s_new[k], msg=f"step {step}: {k}")
        # and the teacher moved wherever it and the student differed
        assert any(not torch.equal(t_old[k], t_new[k]) for k in t_old), step


def test_xray_phase_freezes_the_parameters_the_pattern_names():
    # the toy's 3D stem is not in the X-ray graph, so its gradient is None and no optimiser would move it anyway: the
    # pattern adds the 2D stem, which the X-ray path trains, so that the freeze itself is what keeps it
    def run(pattern):
        trainer, net, _, _ = build_trainer(max_epochs=1, ct_data=[], n_xray=4, frozen_3d_pattern=pattern)
        before = _snapshot(net.student)
        trainer.run()
        return before, _snapshot(net.student)

    before, after = run(r"3[dD]|stem_2d")
    frozen = [k for k in before if "3d" in k or "stem_2d" in k]
    assert "backbone.stem_2d.weight" in frozen
    assert [k for k in frozen if not torch.equal(before[k], after[k])] == []
    assert not torch.equal(before["backbone.trunk.0.weight"], after["backbone.trunk.0.weight"])
    before, after = run(r"3[dD]")  # the control: left out of the pattern, the 2D stem learns
    assert not torch.equal(before["backbone.stem_2d.weight"], after["backbone.stem_2d.weight"])


def test_phases_alternate_by_epoch_and_by_iteration():
    seen = []
    trainer, *_ = build_trainer(max_epochs=4, n_ct=4, n_xray=4)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append((e.state.epoch, e.state.output["phase"])))
    trainer.run()
    assert seen == [(1, "ct"), (1, "ct"), (2, "xray"), (2, "xray"), (3, "ct"), (3, "ct"), (4, "xray"), (4, "xray")]
    seen.clear()
    trainer, *_ = build_trainer(max_epochs=1, n_ct=8, n_xray=4, mode="iteration")
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.output["phase"]))
    trainer.run()
    assert seen == ["ct", "xray", "ct", "xray"]


def test_loss_falls_on_a_toy_set():
    # 200 steps on four blob volumes: the weighted total (dominated early by reconstruction) must fall
    trainer, *_ = build_trainer(max_epochs=100, n_ct=4, batch_size=2, xray_data=[], lr=3e-3, clip_grad_norm=0)
    out = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: out.append(e.state.output))
    trainer.run()
    mean = lambda key, part: sum(o[key] for o in part) / len(part)  # noqa: E731
    # the first steps have teacher == student (distillation trivially low), so compare from step 10 on
    assert mean("loss", out[-20:]) < 0.8 * mean("loss", out[10:30]), [round(o["loss"], 3) for o in out[::20]]
    assert mean("reconstruction", out[-20:]) < 0.5 * mean("reconstruction", out[:20])


def _train(tmp_path, max_epochs, crash_at=None, resume=True, started=None):
    trainer, net, opt, loss = build_trainer(max_epochs=max_epochs, n_ct=6, n_xray=4, batch_size=2)
    ckpt = TrainingCheckpoint(tmp_path, {"network": net, "optimizer": opt, "loss": loss}, save_every=2, resume=resume)
    ckpt.attach(trainer)
    if started is not None:
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: started.append(e.state.iteration))
    if crash_at is not None:

        @trainer.on(Events.ITERATION_COMPLETED(once=crash_at))
        def _crash(engine):
            raise KeyboardInterrupt("simulated kill")

    trainer.run()
    return net


def test_resume_after_kill_reproduces_uninterrupted_weights(tmp_path):
    reference = _snapshot(_train(tmp_path / "ref", max_epochs=3))
    # killed at iteration 5 (mid-epoch of the X-ray epoch 2, after the save at iteration 4), then restarted
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", max_epochs=3, crash_at=5)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 4
    started = []
    resumed = _snapshot(_train(tmp_path / "run", max_epochs=3, started=started))
    # it went on from the checkpoint (a run started over, with the same seed, would end with the same weights)
    assert started == [5, 6, 7, 8, 9]
    for k in reference:
        torch.testing.assert_close(resumed[k], reference[k], rtol=0, atol=0, msg=k)


def test_corrupt_sample_is_skipped_and_counted(caplog):
    caplog.set_level(logging.INFO, logger="unimiss_monai.engines.pretraining")
    good = toy_items(4)
    bad = dict(good[1])
    bad["ct_view0"] = "/nonexistent/corrupt.nii.gz"  # not a tensor: the transform fails on it
    data = [good[0], bad, good[2], good[3]]
    trainer, *_ = build_trainer(max_epochs=1, ct_data=data, xray_data=[])
    trainer.run()
    assert trainer.state.skipped_samples == 1
    assert trainer.state.iteration == 2
    # the epoch's count: 4 draws, one failed
    assert trainer.state.metrics["ct_samples"] == 3 and trainer.state.metrics["xray_samples"] == 0
    assert "corrupt.nii.gz" in caplog.text and "trained on 3 CT and 0 X-ray sample(s)" in caplog.text
    # the bundle's finalize logs the export, then fails the run naming what was left out (one line)
    with pytest.raises(SamplesLeftOut, match=r"^the run finished and exported m\.pt, but left out 1 sample load\(s\) "
                       r"that failed, 1 different sample\(s\): .*corrupt\.nii\.gz.*; fix or remove them.*"
                       r"--resume_finished false") as err:
        log_export(trainer, "m.pt")
    assert "\n" not in str(err.value) and "exported backbone: m.pt" in caplog.text
    # a resumed run still knows them
    again, *_ = build_trainer(max_epochs=1, ct_data=data, xray_data=[])
    again.load_state_dict(trainer.state_dict())
    with pytest.raises(SamplesLeftOut, match="corrupt.nii.gz"):
        log_export(again, "m.pt")
    clean, *_ = build_trainer(max_epochs=1, ct_data=good, xray_data=[])
    clean.run()
    log_export(clean, "m.pt")  # nothing left out: no error


def test_failures_are_named_once_per_file_and_merged_over_processes(monkeypatch):
    """One entry per file (its first reason), at most 20 named and the rest told as more; under torchrun each
    process ends with every process's failures and the sum of their counts, also after a resume."""
    from unimiss_monai.engines import left_out_samples, pretraining

    trainer, *_ = build_trainer(max_epochs=1, ct_data=toy_items(2), xray_data=[])
    resumed, *_ = build_trainer(max_epochs=1, ct_data=toy_items(2), xray_data=[])
    state = trainer.state
    entries = ["/a.nii (LoadImaged: x)", "/a.nii (Spacingd: y)", "/b.nii (z)"]
    left_out_samples.remember_failures(state.failed_samples, entries)
    assert state.failed_samples == ["/a.nii (LoadImaged: x)", "/b.nii (z)"]
    # this process skipped 3 loads; the other one 2, one of them a file this one also failed on
    state.skipped_samples = 3
    other = (2, ["/b.nii (z)", "/c.nii (w)"])
    monkeypatch.setattr(left_out_samples, "in_process_group", lambda: True)
    monkeypatch.setattr(left_out_samples, "gather_objects", lambda items: [items[0], other])
    pretraining.PretrainingTrainer._merge_failures(trainer)
    assert state.skipped_samples == 5
    assert [e.split(" ")[0] for e in state.failed_samples] == ["/a.nii", "/b.nii", "/c.nii"]
    # the next epoch adds one failure here and none there: counted from the agreed 5, not again from 0
    state.skipped_samples += 1
    other = (0, list(state.failed_samples))
    pretraining.PretrainingTrainer._merge_failures(trainer)
    assert state.skipped_samples == 6
    # a resumed process starts from the checkpoint's agreed count
    resumed.load_state_dict(trainer.state_dict())
    other = (0, [])
    pretraining.PretrainingTrainer._merge_failures(resumed)
    assert resumed.state.skipped_samples == 6
    many = [f"/ct{i}.nii (LoadImaged: broken)" for i in range(25)]
    state.failed_samples = []
    left_out_samples.remember_failures(state.failed_samples, many)
    named = "more than 20 different samples, the first 20: /ct0.nii .*/ct19.nii [^;]*;"
    with pytest.raises(SamplesLeftOut, match=named) as err:
        log_export(trainer, "m.pt")
    assert "/ct20.nii" not in str(err.value)


def test_file_names_with_parentheses_stay_separate_samples():
    from unimiss_monai.engines.left_out_samples import remember_failures

    failed: list[str] = []
    remember_failures(failed, ["/d/scan (1).nii.gz (LoadImaged: bad (gzip) header)", "/d/scan (2).nii.gz (x)",
                               "/d/scan (1).nii.gz (Spacingd: y)", "ct[3] (Orientationd: (a) b)", "ct[3] (z)",
                               "/d/scan (3).nii.gz (X: got 3) values)", "/d/scan (3).nii.gz (y)"])
    assert failed == ["/d/scan (1).nii.gz (LoadImaged: bad (gzip) header)", "/d/scan (2).nii.gz (x)",
                      "ct[3] (Orientationd: (a) b)", "/d/scan (3).nii.gz (X: got 3) values)"]


def test_samples_trained_are_counted_per_phase_and_epoch():
    trainer, *_ = build_trainer(max_epochs=2, n_ct=4, n_xray=4, batch_size=2)
    counts = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: counts.append((e.state.metrics["ct_samples"], e.state.metrics["xray_samples"])))
    trainer.run()
    # epoch 1 is CT, epoch 2 X-ray; each has the CT loader's length (2 batches of 2)
    assert counts == [(4.0, 0.0), (0.0, 4.0)]


def test_a_phase_with_no_good_sample_stops_the_run_naming_the_first_failure():
    bad = [dict(item, ct_view0=f"/data/corrupt{i}.nii.gz") for i, item in enumerate(toy_items(4))]
    trainer, *_ = build_trainer(max_epochs=2, ct_data=bad, n_xray=4)
    with pytest.raises(RuntimeError, match=r"^the ct phase of epoch 1 trained on no sample .*; first failure: \S+ \(.+\)$") as err:
        trainer.run()
    assert "\n" not in str(err.value) and trainer.state.epoch == 1
    # an X-ray-only failure is named as such, after a good CT epoch
    bad_xray = [dict(item, xray_view0="/data/broken.png") for item in toy_xray_items(4)]
    trainer, *_ = build_trainer(max_epochs=2, n_ct=4, xray_data=bad_xray)
    with pytest.raises(RuntimeError, match="the xray phase of epoch 2 trained on no sample"):
        trainer.run()


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="'ct' datalist is empty"):
        make_loader(SeededDataset([], [], name="ct"), 2)
    with pytest.raises(ValueError, match="neither"):
        PhaseLoader(None, None)
    # X-ray items where CT views are expected: the view transforms fail on every sample, each is skipped and counted,
    # and a CT phase that trained on nothing stops the run
    trainer, *_ = build_trainer(max_epochs=1, ct_data=toy_xray_items(2), xray_data=[])
    with pytest.raises(RuntimeError, match="the ct phase of epoch 1 trained on no sample"):
        trainer.run()
    assert trainer.state.skipped_samples == 2
    # a batch reaching the trainer without the CT views names the missing keys
    trainer, *_ = build_trainer(max_epochs=1, ct_data=toy_xray_items(2), xray_data=[], ct_transform=[])
    with pytest.raises(KeyError, match=r"ct batch has no \['ct_view0', 'ct_view1'\]"):
        trainer.run()


def test_sampler_is_a_function_of_seed_epoch_and_position():
    s = ResumableSampler(5, num_samples=7, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=4)
    assert list(s) == full[4:] and len(s) == 3
    s.set_epoch(3)
    assert list(s) != full
    ranks = [ResumableSampler(5, num_samples=4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(1)
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == 4 and not set(a) & set(b)


def _train_accumulating(tmp_path, crash_at=None, started=None):
    # 4 iterations per epoch in windows of 2; a save every 3 iterations falls inside a window
    trainer, net, opt, loss = build_trainer(max_epochs=2, n_ct=8, batch_size=2, xray_data=[], accumulation_steps=2)
    TrainingCheckpoint(tmp_path, {"network": net, "optimizer": opt, "loss": loss}, save_every=3).attach(trainer)
    if started is not None:
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: started.append(e.state.iteration))
    if crash_at is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=crash_at), lambda e: (_ for _ in ()).throw(KeyboardInterrupt()))
    trainer.run()
    return net


def test_resume_inside_an_accumulation_window_reproduces_uninterrupted_weights(tmp_path):
    reference = _snapshot(_train_accumulating(tmp_path / "ref"))
    with pytest.raises(KeyboardInterrupt):
        _train_accumulating(tmp_path / "run", crash_at=5)
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 4  # the save due at iteration 3 waited for its window to close
    started = []
    resumed = _snapshot(_train_accumulating(tmp_path / "run", started=started))
    assert started == [5, 6, 7, 8]  # it went on after the saved iteration, not from the start
    for k in reference:
        torch.testing.assert_close(resumed[k], reference[k], rtol=0, atol=0, msg=k)


def test_trained_dims_follow_what_went_through_the_backbone():
    # X-rays alone train the 2D branch only; a CT phase trains 3D, and 2D too through its slices or DRR views
    cases = [({"n_ct": 0}, [2]), ({"n_xray": 0}, [2, 3]), ({"n_xray": 0, "slice_stride": 0, "drr_keys": []}, [3]), ({}, [2, 3])]
    for kw, dims in cases:
        trainer, net, *_ = build_trainer(max_epochs=2, **kw)
        trainer.run()
        assert net.trained_dims == dims and trainer.state_dict()["trained_dims"] == dims, kw


def test_trained_dims_survive_a_resume_and_stay_unknown_after_an_older_checkpoint():
    trainer, net, *_ = build_trainer(max_epochs=1, n_xray=0)
    trainer.run()
    state = trainer.state_dict()
    # a run resumed from that checkpoint trains X-rays only from then on, and still records the CT it saw before
    resumed, net2, *_ = build_trainer(max_epochs=2, n_ct=0)
    resumed.load_state_dict(state)
    assert net2.trained_dims == [2, 3]
    older = {k: v for k, v in state.items() if k != "trained_dims"}
    resumed, net3, *_ = build_trainer(max_epochs=2, n_ct=0)
    resumed.load_state_dict(older)
    resumed.run()
    assert net3.trained_dims is None  # not what the first epochs trained: unknown, and the export records nothing
