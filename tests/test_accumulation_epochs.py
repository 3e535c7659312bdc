"""Gradient accumulation of the pretraining engines across epoch boundaries and over empty batches, and the
``freeze_slice_encoder_in_stage2`` flag read from a command-line string.

Each optimiser step must see exactly the gradients of its own accumulation window: the windows restart with each
epoch (the last, shorter one of an epoch steps too), and a batch that trains nothing at a window's end still lets
the window's earlier micro-batches step.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent / "engines"))
from test_intra_inter_step import SIZE, _build  # noqa: E402
from test_pretraining_toys import OUT_DIM, ToyBackbone, ToyHead, toy_items, toy_xray_items  # noqa: E402

from unimiss_monai.data.loaders import COUNT_KEY, SKIPPED_KEY, PhaseLoader  # noqa: E402
from unimiss_monai.engines.intra_inter import IntraInterTrainer  # noqa: E402
from unimiss_monai.engines.pretraining import PretrainingTrainer  # noqa: E402
from unimiss_monai.losses import MaskedEmbeddingLoss, SwAVLoss, UniMissPlusLoss  # noqa: E402
from unimiss_monai.networks import ClusteringHead, ImageVolumeNet  # noqa: E402
from unimiss_monai.networks.nets.student_teacher import StudentTeacher  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

EPOCH_LENGTH, ACC, EPOCHS = 5, 2, 2
EMPTY = {SKIPPED_KEY: ["/missing.nii.gz"], COUNT_KEY: 0, "empty": True}


class ScriptedLoader(PhaseLoader):
    """A ``PhaseLoader`` whose epochs are given batch by batch: ``script(epoch, it) -> (phase, batch)``."""

    def __init__(self, script, epoch_length: int) -> None:
        super().__init__(ct_loader=[None] * epoch_length, epoch_length=epoch_length)
        self.script = script

    def __iter__(self):
        for it in range(self.start, self.epoch_length):
            yield self.script(self.epoch, it)


class Recorder(nn.Module):
    """Wraps a loss; records the gradient each trained iteration's loss gives ``params`` (keyed by iteration)."""

    def __init__(self, loss: nn.Module, params: list[torch.Tensor], key: str | None = None) -> None:
        super().__init__()
        self.loss, self.params, self.key, self.trainer = loss, params, key, None
        self.grads: dict[int, list[torch.Tensor]] = {}

    def forward(self, *args, **kwargs):
        out = self.loss(*args, **kwargs)
        total = out[self.key] if self.key else out
        grads = torch.autograd.grad(total.float(), self.params, retain_graph=True, allow_unused=True)
        self.grads[self.trainer.state.iteration] = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        return out


def _record_steps(trainer, opt, params) -> list[tuple[int, list[torch.Tensor]]]:
    steps = []
    grads = lambda: [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]  # noqa: E731
    opt.register_step_pre_hook(lambda *_: steps.append((trainer.state.iteration, grads())))
    return steps


def _pretraining(script, epochs=EPOCHS, epoch_length=EPOCH_LENGTH, acc=ACC):
    torch.manual_seed(0)
    net = StudentTeacher(ToyBackbone(), ToyHead())
    params = list(net.student.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    loss = Recorder(UniMissPlusLoss(out_dim=OUT_DIM), params, key="total")
    trainer = PretrainingTrainer(
        "cpu", epochs, ScriptedLoader(script, epoch_length), net, opt, loss, momentum_schedule=lambda s: 0.9,
        slice_channels=1, clip_grad_norm=0.0, accumulation_steps=acc,
    )
    loss.trainer = trainer
    return trainer, loss, _record_steps(trainer, opt, params)


def _ct_script(empty_at=()):
    """CT batches of one toy sample each; ``empty_at``: 1-based run iterations whose every sample failed."""
    items = toy_items(8)

    def script(epoch, it):
        iteration = (epoch - 1) * EPOCH_LENGTH + it + 1
        if iteration in empty_at:
            return "ct", dict(EMPTY)
        return "ct", {k: v[None] for k, v in items[iteration % len(items)].items()} | {COUNT_KEY: 1}

    return script


def _check_windows(steps, recorded, windows, acc=ACC):
    """One step per expected window (its last iteration), each with the mean of that window's trained gradients."""
    assert [it for it, _ in steps] == [w[-1] for w in windows]
    for (it, seen), window in zip(steps, windows):
        trained = [recorded[i] for i in window if i in recorded]
        expected = [sum(g[j] for g in trained) / acc for j in range(len(seen))]
        for s, e in zip(seen, expected):
            assert torch.allclose(s, e, atol=1e-6), f"step at iteration {it} did not see only window {window}"


def _windows(epochs=EPOCHS, epoch_length=EPOCH_LENGTH, acc=ACC):
    return [
        tuple(range(e * epoch_length + s + 1, e * epoch_length + min(s + acc, epoch_length) + 1))
        for e in range(epochs) for s in range(0, epoch_length, acc)
    ]


@pytest.mark.parametrize("acc", [2, 3])
def test_steps_per_epoch_restart_with_each_epoch_and_match_the_schedule_length(acc):
    trainer, _, steps = _pretraining(_ct_script(), acc=acc)
    trainer.run()
    assert len(steps) == trainer.state.optimizer_step == EPOCHS * math.ceil(EPOCH_LENGTH / acc)
    assert trainer.optimizer_steps() == trainer.optimizer_steps(EPOCHS) == len(steps)
    assert [it for it, _ in steps] == [w[-1] for w in _windows(acc=acc)]


def test_the_bundles_schedule_length_matches_the_engine():
    from unimiss_monai.utils import optimizer_steps

    trainer, _, _ = _pretraining(_ct_script())
    assert optimizer_steps(EPOCHS, EPOCH_LENGTH, ACC) == trainer.optimizer_steps()


def test_each_step_uses_only_its_own_windows_gradients():
    trainer, loss, steps = _pretraining(_ct_script())
    trainer.run()
    _check_windows(steps, loss.grads, _windows())


def test_empty_batch_at_a_step_position_still_steps_on_pending_gradients(caplog):
    # iteration 4 ends window (3, 4) with 3's gradient pending; iteration 10 is epoch 2's last window (10,) on its own,
    # with nothing pending
    trainer, loss, steps = _pretraining(_ct_script(empty_at=(4, 10)))
    with caplog.at_level("WARNING", logger="unimiss_monai.engines.pretraining"):
        trainer.run()
    windows = [w for w in _windows() if w != (10,)]  # (10,) has nothing pending: no step
    _check_windows(steps, loss.grads, windows)
    assert sum("accumulation window" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("empty_at, windows", [((3,), [(1, 2), (3, 4), (5,)]), ((3, 4), [(1, 2), (5,)])])
def test_a_window_opened_by_an_empty_batch_starts_clean(empty_at, windows):
    # an empty first micro-batch still opens its window: (3, 4) must not see (1, 2)'s gradient again; a window with
    # nothing trained takes no step
    trainer, loss, steps = _pretraining(_ct_script(empty_at=empty_at), epochs=1)
    trainer.run()
    _check_windows(steps, loss.grads, windows)


def test_a_window_of_a_ct_and_an_xray_batch_keeps_the_ct_gradients_of_3d_parameters():
    # iteration mode alternates the phases, so with accumulation 2 every window is [CT, X-ray]: the step must not apply
    # the X-ray rule (3D parameters fixed) to the CT gradient of the 3D stem accumulated before it
    ct, xray = toy_items(4), toy_xray_items(4)

    def script(epoch, it):
        if it % 2 == 0:
            return "ct", {k: v[None] for k, v in ct[it % 4].items()} | {COUNT_KEY: 1}
        return "xray", {k: v[None] for k, v in xray[it % 4].items()} | {COUNT_KEY: 1}

    trainer, loss, steps = _pretraining(script, epochs=1, epoch_length=4)
    stem_3d = trainer.network.student.backbone.stem_3d.weight
    before = stem_3d.detach().clone()
    trainer.run()
    assert [it for it, _ in steps] == [2, 4]
    assert not torch.equal(stem_3d, before), "the 3D stem's CT gradients were dropped at the step"
    _check_windows(steps, loss.grads, [(1, 2), (3, 4)])


# ---- IntraInterTrainer ------------------------------------------------------------------------------------------------
def _intra_inter(script, schedule="joint", stage_epochs=None, epochs=EPOCHS, **kw):
    torch.manual_seed(0)
    net = ImageVolumeNet("resnet", d_model=16, num_heads=2, depth=1, sequence_length=4,
                         backbone_kwargs={"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [8, 8, 16, 16]})
    heads = [ClusteringHead(16, hidden_dim=16, out_dim=8, num_prototypes=6) for _ in range(2)]
    params = [p for m in (net, *heads) for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    intra = Recorder(SwAVLoss(queue_length=16, embed_dim=8), params)
    trainer = IntraInterTrainer(
        "cpu", epochs, ScriptedLoader(script, EPOCH_LENGTH), net, heads[0], heads[1], opt, intra,
        SwAVLoss(queue_length=4, embed_dim=8), MaskedEmbeddingLoss(), schedule=schedule, stage_epochs=stage_epochs,
        epoch_queue_starts=10, clip_grad_norm=0.0, accumulation_steps=ACC, **kw,
    )
    intra.trainer = trainer
    return trainer, intra, _record_steps(trainer, opt, params)


def _xray_script(empty_at=(), ct_at=()):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(2, 1, 1, SIZE, SIZE, generator=g) for _ in range(4)]
    volume = torch.rand(1, 1, 4, SIZE, SIZE, generator=g)

    def script(epoch, it):
        iteration = (epoch - 1) * EPOCH_LENGTH + it + 1
        if iteration in empty_at:
            return "xray", dict(EMPTY)
        if iteration in ct_at:
            return "ct", {"image_view0": volume, "image_view1": volume.flip(-1), COUNT_KEY: 1}
        x = images[iteration % len(images)]
        return "xray", {"image_view0": x[0], "image_view1": x[1], COUNT_KEY: 1}

    return script


def test_intra_inter_windows_restart_with_each_epoch_and_survive_an_empty_batch():
    trainer, loss, steps = _intra_inter(_xray_script(empty_at=(4,)))
    trainer.run()
    assert trainer.optimizer_steps() == EPOCHS * math.ceil(EPOCH_LENGTH / ACC) == len(steps)
    _check_windows(steps, loss.grads, _windows())


def test_intra_inter_stage2_xray_batch_at_a_window_end_steps_the_pending_ct_gradients():
    # stage 2 with the slice encoder frozen trains nothing on X-rays; the CT micro-batch before it still steps
    trainer, loss, steps = _intra_inter(_xray_script(ct_at=(1, 3, 5)), schedule="staged", stage_epochs=[0, 1, 0],
                                        epochs=1, loss_weights={"intra": 1.0, "inter": 1.0, "masked": 1.0})
    trainer.run()
    assert [it for it, _ in steps] == [2, 4, 5]


# ---- freeze_slice_encoder_in_stage2 from the command line -------------------------------------------------------------
@pytest.mark.parametrize("value, frozen", [("false", False), ("False", False), ("0", False), ("true", True), (True, True), (False, False)])
def test_freeze_slice_encoder_flag_reads_command_line_strings(value, frozen):
    trainer, *_ = _build(freeze_slice_encoder_in_stage2=value)
    # stage 2 trains X-rays only when the slice encoder is not frozen
    assert (trainer.active_terms(2, "xray") == {}) is frozen


def test_freeze_slice_encoder_flag_refuses_a_non_boolean():
    with pytest.raises(ValueError, match="freeze_slice_encoder_in_stage2"):
        _build(freeze_slice_encoder_in_stage2="maybe")
