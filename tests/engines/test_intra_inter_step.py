"""IntraInterTrainer: stage selection, which parameters each stage trains, padded / mixed / empty slice sequences,
and an interrupted run resumed from its checkpoint ending with the uninterrupted run's state (network, heads,
SwAV queues, DeepCluster-v2 bank and assignments, optimiser), on small synthetic batches."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events

from unimiss_monai.data.loaders import PhaseLoader, SeededDataset, make_loader
from unimiss_monai.engines.intra_inter import IntraInterTrainer
from unimiss_monai.handlers import TrainingCheckpoint
from unimiss_monai.losses import DeepClusterV2Loss, MaskedEmbeddingLoss, SwAVLoss
from unimiss_monai.networks import ClusteringHead, ImageVolumeNet

L, SIZE, N_CT, N_XRAY = 6, 32, 4, 4
TINY_RESNET = {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [8, 8, 16, 16]}
INTRA_K, INTER_K = (4, 5), (2, 3)  # DeepCluster-v2 prototype sets; the inter bank holds 4 volumes


def _data(seed: int = 0) -> tuple[list[dict], list[dict]]:
    g = torch.Generator().manual_seed(seed)
    ct = []
    for v in range(N_CT):
        n = L - v % 3  # mixed slice counts, padded at the end
        vol = torch.zeros(1, L, SIZE, SIZE)
        vol[:, :n] = torch.rand(1, n, SIZE, SIZE, generator=g)
        ct.append({"image_view0": vol, "image_view1": (vol + 0.05 * torch.rand(vol.shape, generator=g)) * (vol != 0), "num_slices": n, "index": v})
    xray = [{"image_view0": torch.rand(1, SIZE, SIZE, generator=g), "image_view1": torch.rand(1, SIZE, SIZE, generator=g), "index": N_CT * L + i} for i in range(N_XRAY)]
    return ct, xray


def _build(tmp_path=None, clustering="swav", schedule="staged", stage_epochs=(1, 1, 1), epochs=3, mode="iteration", **kw):
    torch.manual_seed(0)
    net = ImageVolumeNet("resnet", d_model=16, num_heads=2, depth=1, sequence_length=L, backbone_kwargs=TINY_RESNET)
    sizes = (6, 6) if clustering == "swav" else (INTRA_K, INTER_K)
    heads = [ClusteringHead(16, hidden_dim=16, out_dim=8, num_prototypes=k, freeze_prototypes_niters=1) for k in sizes]
    if clustering == "swav":
        losses = [SwAVLoss(queue_length=16, embed_dim=8), SwAVLoss(queue_length=4, embed_dim=8)]
    else:
        losses = [DeepClusterV2Loss(N_CT * L + N_XRAY, 8, INTRA_K), DeepClusterV2Loss(N_CT, 8, INTER_K)]
    params = [p for m in (net, *heads) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    ct, xray = _data()
    loaders = [make_loader(SeededDataset(d, [], name), 2, 4, seed=s) for d, name, s in ((ct, "ct", 0), (xray, "xray", 1))]
    handlers = []
    if tmp_path is not None:
        handlers.append(TrainingCheckpoint(tmp_path, {"network": net, "intra_head": heads[0], "inter_head": heads[1], "optimizer": opt, "loss": torch.nn.ModuleList(losses)}, save_every=kw.pop("save_every", 0)))
    trainer = IntraInterTrainer(
        "cpu", epochs, PhaseLoader(*loaders, mode=mode, epoch_length=2), net, heads[0], heads[1], opt, losses[0], losses[1],
        MaskedEmbeddingLoss(), schedule=schedule, stage_epochs=list(stage_epochs), epoch_queue_starts=1,
        train_handlers=handlers, **{"mask_ratio": 0.2, **kw},
    )
    return trainer, net, heads, losses


def test_stage_is_a_function_of_the_epoch_and_selects_the_terms():
    trainer, *_ = _build(stage_epochs=(2, 1, 3), epochs=6)
    assert [trainer.stage(e) for e in range(6)] == [1, 1, 2, 3, 3, 3]
    assert trainer.active_terms(1, "ct") == {"intra": 1.0} and trainer.active_terms(1, "xray") == {"intra": 1.0}
    assert trainer.active_terms(2, "ct") == {"intra": 1.0, "masked": 1.0}
    assert trainer.active_terms(2, "xray") == {}  # the slice encoder is frozen in stage 2
    assert trainer.active_terms(3, "ct") == {"intra": 1.0, "inter": 1.0, "masked": 1.0}
    joint, *_ = _build(schedule="joint", loss_weights={"inter": 0.5, "masked": 0.0})
    assert {joint.stage(e) for e in range(3)} == {0}
    assert joint.active_terms(0, "ct") == {"intra": 1.0, "inter": 0.5} and joint.active_terms(0, "xray") == {"intra": 1.0}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"stage_epochs": (1, 1, 2)}, "summing to train#epochs=3"),
        ({"schedule": "stagged"}, "'staged' or 'joint'"),
        ({"loss_weights": {"intra": -1.0}}, "values >= 0"),
        ({"loss_weights": {"intra": 0.0, "inter": 0.0, "masked": 0.0}}, "one > 0"),
        ({"loss_weights": {"masked": 0.0, "intra": 0.0}}, "stage 1 .* all 0"),
        ({"mask_ratio": 1.0}, r"mask_ratio must be in \(0, 1\)"),
    ],
)
def test_bad_recipe_settings_are_refused_in_one_line(kw, match):
    with pytest.raises(ValueError, match=match):
        _build(**kw)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict, module: torch.nn.Module, prefix: str) -> bool:
    now = dict(module.named_parameters())
    return any(not torch.equal(before[k], now[k]) for k in before if k.startswith(prefix))


def test_each_stage_trains_its_parameters_only(one_thread):
    trainer, net, heads, _ = _build()
    seen = {}

    def record(engine):
        seen.setdefault(engine.stage(engine.state.epoch - 1), []).append(dict(engine.state.output))

    snaps = {}
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: snaps.__setitem__(e.state.epoch, (_snapshot(net), _snapshot(heads[1]))))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    ends = {}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: ends.__setitem__(e.state.epoch, (_snapshot(net), _snapshot(heads[1]))))
    trainer.run()
    # stage 1 (2D): slice encoder trained, inter-slice transformer, predictor and volume head untouched
    (n0, h0), (n1, h1) = snaps[1], ends[1]
    assert _changed(n0, net, "slice_encoder.") and not any(not torch.equal(n0[k], n1[k]) for k in n0 if k.startswith(("inter.", "predictor.")))
    assert all(torch.equal(h0[k], h1[k]) for k in h0)
    assert {k for o in seen[1] for k in o if k in ("intra", "inter", "masked")} == {"intra"}
    # stage 2 (masked embedding, encoder frozen): transformer and predictor move, the slice encoder does not
    (n0, _), (n1, _) = snaps[2], ends[2]
    assert all(torch.equal(n0[k], n1[k]) for k in n0 if k.startswith("slice_encoder."))
    assert any(not torch.equal(n0[k], n1[k]) for k in n0 if k.startswith("inter.")) and any(not torch.equal(n0[k], n1[k]) for k in n0 if k.startswith("predictor."))
    # stage 3 (joint 3D): all three terms, every part moves
    (n0, h0), (n1, h1) = snaps[3], ends[3]
    assert {k for o in seen[3] for k in o if k in ("intra", "inter", "masked")} == {"intra", "inter", "masked"}
    assert all(any(not torch.equal(n0[k], n1[k]) for k in n0 if k.startswith(p)) for p in ("slice_encoder.", "inter.", "predictor."))
    assert any(not torch.equal(h0[k], h1[k]) for k in h0)
    assert all(0.0 <= o["intra_entropy"] <= 1.0 + 1e-6 for o in seen[3] if "intra_entropy" in o)


def test_padding_content_never_reaches_the_losses(one_thread):
    trainer, net, heads, losses = _build(schedule="joint")
    ct, _ = _data()
    batch = {k: torch.stack([torch.as_tensor(c[k]) for c in ct[:3]]) for k in ct[0]}
    garbage = {**batch, **{k: batch[k].clone() for k in ("image_view0", "image_view1")}}
    for k in ("image_view0", "image_view1"):
        for b, n in enumerate(batch["num_slices"].tolist()):
            garbage[k][b, :, n:] = 1e4
    trainer.state.epoch = 1
    for m in (net, *heads):
        m.eval()  # batch-norm statistics of two calls must not differ by state
    for loss in losses:
        loss.eval()
    torch.manual_seed(1)
    a, _ = trainer._embed("ct", batch, {"intra": 1.0, "inter": 1.0, "masked": 1.0}, stage=0)
    torch.manual_seed(1)
    b, _ = trainer._embed("ct", garbage, {"intra": 1.0, "inter": 1.0, "masked": 1.0}, stage=0)
    assert a.keys() == b.keys() == {"intra", "inter", "masked"}
    assert all(torch.allclose(a[k], b[k]) for k in a)


@pytest.mark.parametrize("counts, match", [([0, 3], "1..6 real slices"), ([7, 3], "1..6 real slices")])
def test_bad_slice_counts_are_refused(counts, match):
    trainer, *_ = _build(schedule="joint")
    views = torch.rand(2, 1, L, SIZE, SIZE)
    with pytest.raises(ValueError, match=match):
        trainer._padding({"num_slices": torch.tensor(counts)}, views)


def test_all_masked_sequence_is_refused():
    net = ImageVolumeNet("resnet", d_model=16, num_heads=2, depth=1, backbone_kwargs=TINY_RESNET)
    pad = torch.tensor([[False, True], [True, True]])
    with pytest.raises(ValueError, match="at least one real slice"):
        net.inter(torch.randn(2, 2, 16), pad)


def _state(net, heads, losses, trainer) -> dict[str, torch.Tensor]:
    out = {f"net.{k}": v for k, v in net.state_dict().items()}
    for i, m in enumerate((*heads, *losses)):
        out |= {f"m{i}.{k}": v for k, v in m.state_dict().items()}
    for i, s in trainer.optimizer.state_dict()["state"].items():
        out |= {f"opt.{i}.{k}": v for k, v in s.items() if torch.is_tensor(v)}
    return out


@pytest.mark.parametrize("clustering", ["swav", "deepcluster_v2"])
def test_interrupted_run_resumes_to_the_uninterrupted_state(tmp_path, clustering, one_thread):
    ref = _build(clustering=clustering)
    ref[0].run()
    want = _state(*ref[1:], ref[0])

    # stop after iteration 3 (inside stage 2) with a checkpoint there, then resume in fresh objects
    first = _build(tmp_path, clustering=clustering, save_every=3)
    first[0].add_event_handler(Events.ITERATION_COMPLETED(once=3), lambda e: e.terminate())
    first[0].run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 3
    second = _build(tmp_path, clustering=clustering)
    started = []
    second[0].add_event_handler(Events.ITERATION_STARTED, lambda e: started.append(e.state.iteration))
    second[0].run()
    assert started[0] == 4  # it went on from the checkpoint (a fresh start would give the same state too)
    assert second[0].state.iteration == ref[0].state.iteration == 6
    got = _state(*second[1:], second[0])
    assert got.keys() == want.keys()
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, differ[:5]
    if clustering == "swav":
        assert int(second[3][0].queue_count) > 0 and second[3][0].queue.abs().sum() > 0
    else:
        assert bool(second[3][0].memory_filled.any()) and int(second[3][1].assignments.max()) >= 0
