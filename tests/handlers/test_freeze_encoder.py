"""FreezeEncoder and pretrained init: gradients stop and resume at the right epochs; checkpoints load with a report."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from unimiss_monai.handlers import FreezeEncoder, default_pretrained_path, load_pretrained_init


class _Net(torch.nn.Module):
    def __init__(self, width: int = 4, classes: int = 2):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU())
        self.head = torch.nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.encoder(x))


def _train(net: torch.nn.Module, freeze_epochs: int, max_epochs: int) -> list[tuple[bool, bool]]:
    """Train on random data; per epoch record (encoder changed, head changed)."""
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.05)
    data = [(torch.randn(8, 3), torch.randint(0, 2, (8,))) for _ in range(2)]

    def step(engine, batch):
        net.train()
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(batch[0]), batch[1])
        loss.backward()
        opt.step()

    engine = Engine(step)
    FreezeEncoder(net, epochs=freeze_epochs).attach(engine)
    changes, snap = [], {}
    inner = getattr(net, "module", net)

    @engine.on(Events.EPOCH_STARTED)
    def _snap(e):
        snap.update({k: v.clone() for k, v in inner.state_dict().items()})

    @engine.on(Events.EPOCH_COMPLETED)
    def _diff(e):
        state = inner.state_dict()
        enc = any(not torch.equal(state[k], snap[k]) for k in state if k.startswith("encoder."))
        head = any(not torch.equal(state[k], snap[k]) for k in state if k.startswith("head."))
        changes.append((enc, head))

    engine.run(data, max_epochs=max_epochs)
    return changes


def test_encoder_frozen_then_trained():
    # AdamW with weight decay would move a frozen weight if it still got a (zero) gradient: it must get none
    assert _train(_Net(), freeze_epochs=2, max_epochs=4) == [(False, True), (False, True), (True, True), (True, True)]


def test_zero_epochs_trains_everything():
    assert _train(_Net(), freeze_epochs=0, max_epochs=1) == [(True, True)]


def test_ddp_style_wrapper_and_bad_args():
    wrapped = torch.nn.DataParallel(_Net())
    assert _train(wrapped, freeze_epochs=1, max_epochs=2) == [(False, True), (True, True)]
    with pytest.raises(ValueError, match="non-negative"):
        FreezeEncoder(_Net(), epochs=-1)
    engine = Engine(lambda e, b: None)
    FreezeEncoder(torch.nn.Linear(2, 2), epochs=1).attach(engine)
    with pytest.raises(AttributeError, match="no sub-module 'encoder'"):
        engine.run([0], max_epochs=1)


def test_pretrained_backbone_checkpoint_loads_into_encoder(tmp_path, caplog):
    source = _Net()
    path = tmp_path / "model.pt"
    # the pretraining bundle's layout: {"model": backbone state dict}, here with a DDP prefix to strip
    torch.save({"model": {f"module.{k}": v for k, v in source.encoder.state_dict().items()}, "epoch": 3}, path)
    target = _Net()
    with caplog.at_level("INFO", logger="unimiss_monai.handlers.pretrained_init"):
        report = load_pretrained_init(target, path)
    assert report["target"] == "network.encoder" and report["loaded"] == 2 and report["unexpected"] == []
    for k, v in source.encoder.state_dict().items():
        assert torch.equal(target.encoder.state_dict()[k], v)
    assert not torch.equal(target.head.weight, source.head.weight)
    assert "loaded 2/2 tensors" in caplog.text  # the one line a user reads in the bundle log


def test_pretrained_whole_network_and_missing_report(tmp_path):
    source = _Net()
    path = tmp_path / "full.pt"
    state = source.state_dict()
    state.pop("head.bias")
    torch.save(state, path)
    report = load_pretrained_init(_Net(), path)
    assert report["target"] == "network" and report["loaded"] == 3 and report["missing"] == ["head.bias"]
    with pytest.raises(ValueError, match="lacks 1 tensors"):
        load_pretrained_init(_Net(), path, strict=True)


def test_pretrained_errors(tmp_path):
    assert load_pretrained_init(_Net(), None)["loaded"] == 0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained_init(_Net(), tmp_path / "nope.pt")
    other = tmp_path / "wide.pt"
    torch.save({"model": _Net(width=8).encoder.state_dict()}, other)
    with pytest.raises(ValueError, match=r"wide.pt does not fit _Net: 2 tensors differ in shape.*another variant"):
        load_pretrained_init(_Net(), other)
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"model": {"foo.weight": torch.zeros(1)}}, unrelated)
    with pytest.raises(ValueError, match="shares no parameter names"):
        load_pretrained_init(_Net(), unrelated)
    with pytest.raises(KeyError, match="no key 'teacher'"):
        load_pretrained_init(_Net(), other, checkpoint_key="teacher")


def test_default_pretrained_path(tmp_path):
    bundle = tmp_path / "bundles" / "seg"
    bundle.mkdir(parents=True)
    assert default_pretrained_path(bundle) is None
    ckpt = tmp_path / "bundles" / "unimiss_pretraining" / "models" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    assert default_pretrained_path(bundle) == str(ckpt.resolve())


@pytest.mark.parametrize("freeze_epochs, max_epochs, warned", [(3, 3, True), (10, 2, True), (2, 3, False)])
def test_an_encoder_frozen_for_the_whole_run_is_warned_about(caplog, freeze_epochs, max_epochs, warned):
    """It ran to the end and exited 0 with a random encoder never trained (no pretrained weights), unsaid."""
    with caplog.at_level("WARNING", logger="unimiss_monai.handlers.freeze_encoder"):
        changes = _train(_Net(), freeze_epochs, max_epochs)
    assert any(encoder for encoder, _ in changes) is not warned
    said = [r.getMessage() for r in caplog.records if "stays frozen for the whole run" in r.getMessage()]
    assert len(said) == int(warned)
    if warned:
        assert f"freeze_encoder_epochs {freeze_epochs} >= max_epochs {max_epochs}" in said[0]
