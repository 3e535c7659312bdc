"""Masked slice-embedding prediction: the loss counts masked positions only; the mask picks ~10 % of real slices."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from unimiss_monai.losses.masked_embedding import MaskedEmbeddingLoss, random_token_mask


def test_hand_computation():
    pred = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    # masked squared errors: (1 + 1) + (4 + 0) = 6 over 2 positions x 2 channels
    assert MaskedEmbeddingLoss()(pred, target, mask).item() == pytest.approx(1.5)


def test_unmasked_predictions_do_not_count():
    pred, target = torch.randn(2, 7, 4), torch.randn(2, 7, 4)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 3] = mask[1, 0] = mask[1, 5] = True
    loss_fn = MaskedEmbeddingLoss()
    base = loss_fn(pred, target, mask)
    changed = pred.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 4) * 100
    assert torch.equal(loss_fn(changed, target, mask), base)
    p = pred.clone().requires_grad_()
    loss_fn(p, target, mask).backward()
    assert p.grad[~mask].abs().sum() == 0 and p.grad[mask].abs().sum() > 0
    expected = sum(((pred[b, l] - target[b, l]) ** 2).mean() for b, l in mask.nonzero().tolist()) / 3
    assert base.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("detach", [True, False])
def test_target_gradient(detach):
    target = torch.randn(1, 4, 3, requires_grad=True)
    mask = torch.tensor([[False, True, False, False]])
    MaskedEmbeddingLoss(detach_target=detach)(torch.randn(1, 4, 3, requires_grad=True), target, mask).backward()
    assert (target.grad is None) == detach


def test_random_token_mask_ratio_and_padding():
    lengths = [40, 25, 3]
    padding = torch.arange(40)[None] >= torch.tensor(lengths)[:, None]
    mask = random_token_mask(padding, 0.1, generator=torch.Generator().manual_seed(1))
    assert mask.sum(dim=1).tolist() == [math.ceil(0.1 * n) for n in lengths]  # 4, 3 and at least one
    assert not (mask & padding).any()
    again = random_token_mask(padding, 0.1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(mask, again)


@pytest.mark.parametrize("ratio, length", [("0.15", 100), ("0.3", 50), ("0.15", 20), ("0.27", 100), ("0.1", 37)])
def test_random_token_mask_hides_exactly_the_ceiling_of_the_decimal_ratio(ratio, length):
    # exact rational reference: 0.15 * 100 is 15 slices, although 100 * 0.15 is 15.000000000000002 in floating point
    expected = max(1, math.ceil(Fraction(ratio) * length))
    mask = random_token_mask(torch.zeros(2, length, dtype=torch.bool), float(ratio), torch.Generator().manual_seed(0))
    assert mask.sum(dim=1).tolist() == [expected, expected]


def test_bad_input():
    loss_fn = MaskedEmbeddingLoss()
    with pytest.raises(ValueError, match="no masked position"):
        loss_fn(torch.randn(1, 3, 2), torch.randn(1, 3, 2), torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="must both be"):
        loss_fn(torch.randn(1, 3, 2), torch.randn(1, 4, 2), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be a bool"):
        loss_fn(torch.randn(1, 3, 2), torch.randn(1, 3, 2), torch.ones(1, 3))
    with pytest.raises(ValueError, match="no real slice"):
        random_token_mask(torch.tensor([[False, False], [True, True]]))
    with pytest.raises(ValueError, match="mask_ratio"):
        random_token_mask(torch.zeros(1, 4, dtype=torch.bool), 1.0)
