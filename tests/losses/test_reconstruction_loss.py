import pytest
import torch

from unimiss_monai.losses import ReconstructionMSELoss, minmax_normalize


def test_hand_computed_mse_with_sigmoid_and_normalised_target():
    pred = torch.zeros(1, 1, 2, 2)  # sigmoid(0) = 0.5 everywhere
    target = torch.tensor([[[[2.0, 4.0], [6.0, 10.0]]]])  # min-max -> 0, 0.25, 0.5, 1
    expected = ((0.5 - 0.0) ** 2 + (0.5 - 0.25) ** 2 + 0.0 + (0.5 - 1.0) ** 2) / 4
    assert ReconstructionMSELoss(normalize_target=True)(pred, target).item() == pytest.approx(expected)
    raw = ReconstructionMSELoss(apply_sigmoid=False)(torch.ones(1, 1, 2, 2), target)
    assert raw.item() == pytest.approx(((1 - target) ** 2).mean().item())


def test_mask_and_per_sample_normalisation():
    pred = torch.zeros(2, 1, 3, 4, 4, requires_grad=True)
    target = torch.rand(2, 1, 3, 4, 4) * torch.tensor([1.0, 100.0]).view(2, 1, 1, 1, 1)
    norm = minmax_normalize(target)
    assert torch.allclose(norm.flatten(2).amin(-1), torch.zeros(2, 1)) and torch.allclose(norm.flatten(2).amax(-1), torch.ones(2, 1))
    mask = torch.zeros(2, 1, 3, 4, 4)
    mask[:, :, 0] = 1
    loss = ReconstructionMSELoss(normalize_target=True)(pred, target, mask)
    assert loss.item() == pytest.approx(((0.5 - norm[:, :, 0]) ** 2).mean().item(), rel=1e-5)
    loss.backward()
    assert pred.grad[:, :, 1:].abs().sum() == 0 and pred.grad[:, :, 0].abs().sum() > 0


def test_errors():
    with pytest.raises(ValueError, match="target shape"):
        ReconstructionMSELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="mask shape"):
        ReconstructionMSELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.ones(3, 1, 1, 1))
