"""Losses built by a bundle config are never moved to the network's device: their buffers must follow the inputs.

The ``meta`` device stands in for a GPU: a CPU buffer meeting ``meta`` inputs fails exactly as it fails against CUDA
inputs ("Tensor on device cpu is not on the expected device ..."), and it needs no GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unimiss_monai.losses import ClassificationLoss, UniMissPlusLoss

K, B, V = 8, 2, 2


def test_unimiss_plus_loss_centre_follows_the_logits_device():
    loss_fn = UniMissPlusLoss(out_dim=K)  # built on the CPU, as a config builds it
    outputs = {"student": torch.randn(V * B, K, device="meta"), "teacher": torch.randn(V * B, K, device="meta")}
    terms = loss_fn(outputs, teacher_temp=0.04)
    assert terms["total"].device.type == "meta" and terms["total"].shape == ()
    # still the registered buffer (saved and restored by the training checkpoint), now beside the logits
    assert loss_fn.state_dict()["dino.center"].device.type == "meta"
    assert dict(loss_fn.named_buffers())["dino.center"].shape == (1, K)


def test_classification_weights_follow_the_logits_device():
    multi = ClassificationLoss(multi_label=True, pos_weight=[1.0, 3.0])
    out = multi(torch.randn(3, 2, device="meta"), torch.ones(3, 2, device="meta"))
    assert out.device.type == "meta" and out.shape == ()
    exclusive = ClassificationLoss(class_weight=[1.0, 2.0])
    out = exclusive(torch.randn(3, 2, device="meta"), torch.zeros(3, device="meta"))
    assert out.device.type == "meta" and out.shape == ()


def test_classification_weights_follow_the_logits_dtype():
    logits, target = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 2])
    got = ClassificationLoss(class_weight=[1.0, 2.0, 0.5])(logits, target)
    expected = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected)


def test_classification_weights_stay_float32_under_autocast():
    # under autocast the loss runs in float32: bfloat16 logits must not round the weights to bfloat16 on the way
    weight = torch.tensor([1.0, 3.0001, 0.7])
    loss = ClassificationLoss(multi_label=False, class_weight=weight)
    logits = torch.randn(6, 3).bfloat16()
    target = torch.tensor([0, 1, 2, 1, 0, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(logits, target)
    expected = torch.nn.functional.cross_entropy(logits.float(), target, weight=weight)
    assert torch.allclose(got.float(), expected, rtol=1e-6), (float(got), float(expected))
