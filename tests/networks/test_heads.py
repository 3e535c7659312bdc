"""DINO projection head, segmentation/classification heads, layer-wise LR decay groups."""

from __future__ import annotations

import pytest
import torch

from unimiss_monai.networks import ClassificationHead, DINOHead, UniMissClassifier, param_groups_lrd, tiny_overrides


def test_dino_head_weight_norm_and_bottleneck():
    head = DINOHead(32, out_dim=100, hidden_dim=64, bottleneck_dim=16)
    g = head.last_layer.parametrizations.weight.original0
    assert torch.all(g == 1) and not g.requires_grad
    x = torch.randn(5, 32)
    z = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    v = head.last_layer.parametrizations.weight.original1
    expected = z @ (v / v.norm(dim=1, keepdim=True)).T  # unit-norm prototypes: cosine similarities
    torch.testing.assert_close(head(x), expected, atol=1e-5, rtol=1e-4)
    assert head(x).abs().max() <= 1 + 1e-5
    head(x).sum().backward()
    assert v.grad is not None
    head.cancel_last_layer_gradients(epoch=0)
    assert v.grad is None and head.mlp[0].weight.grad is not None
    assert DINOHead(8, 10, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad


def test_dino_head_keeps_grad_after_freeze_epochs():
    head = DINOHead(8, 10, hidden_dim=16, bottleneck_dim=4)
    head(torch.randn(3, 8)).sum().backward()
    head.cancel_last_layer_gradients(epoch=1, freeze_epochs=1)
    assert head.last_layer.parametrizations.weight.original1.grad is not None


@pytest.mark.parametrize("pool,width", [("cls", 6), ("mean", 6), ("cls+mean", 12)])
def test_classification_head_pooling(pool, width):
    head = ClassificationHead(6, 3, pool=pool)
    tokens = torch.randn(2, 5, 6)
    feat = head(tokens, pre_logits=True)
    assert feat.shape == (2, width)
    pooled = {"cls": tokens[:, 0], "mean": tokens[:, 1:].mean(1)}
    pooled["cls+mean"] = torch.cat([pooled["cls"], pooled["mean"]], -1)
    torch.testing.assert_close(head.pool_tokens(tokens), pooled[pool])
    assert head(tokens).shape == (2, 3)
    with pytest.raises(ValueError, match="pool"):
        ClassificationHead(6, 3, pool="max")


def test_param_groups_layer_decay():
    net = UniMissClassifier(2, 1, 3, variant="mit_tiny", **tiny_overrides("mit_tiny"))
    groups = param_groups_lrd(net, base_lr=1.0, weight_decay=0.05, layer_decay=0.5)
    seen = [p for g in groups for p in g["params"]]
    assert len(seen) == len(list(net.parameters())) == len({id(p) for p in seen})
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    n_groups = len(net.layer_groups())
    assert n_groups == 1 + 4 + 1  # stem/embedding, one per block (tiny depths 1,1,1,1), rest
    assert lr_of[id(net.head.fc.weight)] == 1.0
    assert lr_of[id(net.encoder.stem["2d"][0][0].conv.weight)] == 0.5 ** (n_groups - 1)
    assert lr_of[id(net.encoder.blocks[3][0].mlp.fc1.weight)] == 0.5
    assert wd_of[id(net.encoder.cls_token)] == 0 and wd_of[id(net.encoder.pos_embeds[0]["2d"].weight)] == 0
    assert wd_of[id(net.head.fc.bias)] == 0 and wd_of[id(net.head.fc.weight)] == 0.05
    net.freeze_encoder(True)
    assert all(not p.requires_grad for p in net.encoder.parameters())
    frozen_groups = param_groups_lrd(net, 1.0)
    assert sum(len(g["params"]) for g in frozen_groups) == len(list(net.head.parameters()))


def test_teacher_batch_norm_uses_the_batch_statistics_in_training_like_dino():
    # DINO's teacher runs in training mode: a head with use_bn normalises with the batch's statistics. Its running
    # buffers never learn (the EMA moves parameters only), so in eval mode it would scale by the initial ones.
    from unimiss_monai.networks import StudentTeacher

    backbone = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.5))
    net = StudentTeacher(backbone, DINOHead(8, out_dim=16, use_bn=True, hidden_dim=12, bottleneck_dim=4))
    net.train()
    teacher_bns = [m for m in net.teacher.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert teacher_bns and all(m.training for m in teacher_bns)
    assert not net.teacher.backbone[1].training  # dropout / drop-path stay off in the teacher
    x = torch.randn(5, 6)
    # same weights at the start: the teacher's output is the student's without dropout, batch-normalised alike
    net.student.backbone[1].eval()
    assert torch.allclose(net.teacher(x).logits, net.student(x).logits, atol=1e-6)
    net.eval()
    assert not any(m.training for m in teacher_bns)
