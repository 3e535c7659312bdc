import pytest
import torch
from monai.losses import DiceCELoss

from unimiss_monai.losses import StackedDeepSupervisionLoss
from unimiss_monai.networks import UniMissSegmentation, tiny_overrides


def _case(levels: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    stacked = torch.randn(2, levels, 4, 3, 6, 6, generator=gen)
    target = torch.randint(0, 4, (2, 1, 3, 6, 6), generator=gen)
    return stacked, target


def test_stacked_and_list_inputs_agree_with_hand_weighted_sum():
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    stacked, target = _case()
    levels = list(stacked.unbind(1))
    expected = sum(w * base(x, target) for w, x in zip([1.0, 0.5, 0.25], levels))
    loss = StackedDeepSupervisionLoss(base)
    torch.testing.assert_close(loss(stacked, target), expected)
    torch.testing.assert_close(loss(levels, target), expected)
    torch.testing.assert_close(loss(tuple(levels), target), expected)


def test_explicit_weights_and_modes():
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    stacked, target = _case(seed=1)
    per_level = [base(x, target) for x in stacked.unbind(1)]
    custom = StackedDeepSupervisionLoss(base, weights=[0.2, 0.0, 3.0])(stacked, target)
    torch.testing.assert_close(custom, 0.2 * per_level[0] + 3.0 * per_level[2])
    same = StackedDeepSupervisionLoss(base, weight_mode="same")(stacked, target)
    torch.testing.assert_close(same, sum(per_level))
    two = StackedDeepSupervisionLoss(base, weight_mode="two")(stacked, target)
    torch.testing.assert_close(two, per_level[0] + 0.5 * (per_level[1] + per_level[2]))


def test_plain_logits_get_the_wrapped_loss_and_coarse_levels_resized_targets():
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    stacked, target = _case(seed=2)
    target = target.float()  # MONAI resizes targets with "nearest-exact", which has no integer kernel on CPU
    main = stacked[:, 0]
    torch.testing.assert_close(StackedDeepSupervisionLoss(base)(main, target), base(main, target))
    coarse = torch.randn(2, 4, 3, 3, 3)
    coarse_target = torch.nn.functional.interpolate(target, size=(3, 3, 3), mode="nearest-exact")
    torch.testing.assert_close(
        StackedDeepSupervisionLoss(base)([main, coarse], target), base(main, target) + 0.5 * base(coarse, coarse_target)
    )


def test_bad_inputs_are_refused():
    loss = StackedDeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))
    _, target = _case()
    with pytest.raises(ValueError, match="fits neither target"):
        loss(torch.randn(2, 4, 6, 6), target)
    with pytest.raises(ValueError, match="empty list"):
        loss([], target)


def test_gradient_reaches_every_level_of_the_network():
    torch.manual_seed(0)
    net = UniMissSegmentation(3, 1, 3, variant="mitplus", img_size=(16, 32, 32), deep_supervision=True, **tiny_overrides("mitplus"))
    x, y = torch.randn(1, 1, 16, 32, 32), torch.randint(0, 3, (1, 1, 16, 32, 32))
    out = net.train()(x)
    assert out.ndim == 6 and out.shape[:3] == (1, 1 + len(net.head.deep), 3) and out.shape[3:] == x.shape[2:]
    out.retain_grad()
    StackedDeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))(out, y).backward()
    assert all(out.grad[:, level].abs().sum() > 0 for level in range(out.shape[1]))
    assert net.head.out.weight.grad.abs().sum() > 0
    assert all(conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0 for conv in net.head.deep)
    with torch.no_grad():
        assert net.eval()(x).shape == (1, 3, 16, 32, 32)  # eval mode: plain main logits
