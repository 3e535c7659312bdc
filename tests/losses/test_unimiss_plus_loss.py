"""UniMissPlusLoss and CrossDimensionDINOLoss against term-by-term hand assembly from the DINO re-statement."""

from __future__ import annotations

import pytest
import torch

from dino_reference import reference_dino
from unimiss_monai.losses import CrossDimensionDINOLoss, UniMissPlusLoss

K, B, V, S = 12, 2, 2, 4


def _ema(center, teacher, m=0.9):
    return m * center + (1 - m) * teacher.mean(0, keepdim=True)


def _outputs():
    return {
        "student": torch.randn(V * B, K, requires_grad=True),
        "teacher": torch.randn(V * B, K),
        "student_drr": torch.randn(V * B, K, requires_grad=True),
        "student_slices": torch.randn(V * B, S, K, requires_grad=True),
        "reconstruction": torch.randn(V * B, 1, 4, 6, 6, requires_grad=True),
        "image": torch.randn(V * B, 1, 4, 6, 6) * 500,
        "reconstruction_drr": torch.randn(V * B, 1, 8, 8, requires_grad=True),
        "image_drr": torch.rand(V * B, 1, 8, 8),
    }


@pytest.mark.parametrize("center_update", ["per_term", "once"])
def test_unimiss_plus_terms_and_total(center_update):
    out = _outputs()
    loss_fn = UniMissPlusLoss(K, weight_drr=0.5, weight_slices=0.1, weight_reconstruction=5.0, center_update=center_update)
    terms = loss_fn(out, teacher_temp=0.04)

    t, c = out["teacher"].detach(), torch.zeros(1, K)
    slices_mean = out["student_slices"].detach().mean(1)
    expected = {}
    for name, student in (("distill", out["student"]), ("drr_distill", out["student_drr"]), ("slices_distill", slices_mean)):
        expected[name] = reference_dino(student.detach(), t, c, V, 0.1, 0.04)
        if center_update == "per_term":  # reference code: centre moves after every DINO term
            c = _ema(c, t)
    if center_update == "once":
        c = _ema(c, t)
    img = out["image"]
    lo = img.amin(dim=(2, 3, 4), keepdim=True)
    hi = img.amax(dim=(2, 3, 4), keepdim=True)
    expected["reconstruction"] = ((torch.sigmoid(out["reconstruction"].detach()) - (img - lo) / (hi - lo)) ** 2).mean()
    expected["reconstruction_drr"] = ((torch.sigmoid(out["reconstruction_drr"].detach()) - out["image_drr"]) ** 2).mean()
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-5), name
    total = expected["distill"] + 0.5 * expected["drr_distill"] + 0.1 * expected["slices_distill"]
    total = total + 5 * (expected["reconstruction"] + expected["reconstruction_drr"])
    assert terms["total"].item() == pytest.approx(total.item(), rel=1e-5)
    assert torch.allclose(loss_fn.dino.center, c.float(), atol=1e-6)

    terms["total"].backward()
    for key in ("student", "student_drr", "student_slices", "reconstruction", "reconstruction_drr"):
        assert out[key].grad is not None and out[key].grad.abs().sum() > 0, key


def test_unimiss_plus_2d_step_and_errors():
    loss_fn = UniMissPlusLoss(K)
    x = torch.rand(V * B, 3, 8, 8)
    terms = loss_fn({"student": torch.randn(V * B, K), "teacher": torch.randn(V * B, K),
                     "reconstruction": torch.zeros_like(x), "image": x}, 0.04)
    assert set(terms) == {"distill", "reconstruction", "total"}
    assert terms["reconstruction"].item() == pytest.approx(((0.5 - x) ** 2).mean().item(), rel=1e-5)  # no rescale in 2D
    with pytest.raises(ValueError, match="'teacher'"):
        loss_fn({"student": torch.randn(4, K)}, 0.04)
    with pytest.raises(ValueError, match="'image'"):
        loss_fn({"student": torch.randn(4, K), "teacher": torch.randn(4, K), "reconstruction": x}, 0.04)
    with pytest.raises(ValueError, match="student_slices"):
        loss_fn({"student": torch.randn(4, K), "teacher": torch.randn(4, K), "student_slices": torch.randn(4, 2, 2, K)}, 0.04)
    with pytest.raises(ValueError, match="center_update"):
        UniMissPlusLoss(K, center_update="twice")


def test_cross_dimension_four_terms_match_reference():
    vol_s, vol_t = torch.randn(V * B, K, requires_grad=True), torch.randn(V * B, K)
    slc_s, slc_t = torch.randn(V * B, S, K, requires_grad=True), torch.randn(V * B, S, K)
    loss_fn = CrossDimensionDINOLoss(K)
    terms = loss_fn(vol_s, vol_t, slc_s, slc_t, teacher_temp=0.04)
    ms, mt = slc_s.detach().mean(1), slc_t.mean(1)
    c = torch.zeros(1, K)
    order = [("volume", vol_s.detach(), vol_t), ("slices_to_volume", ms, vol_t), ("slices", ms, mt),
             ("volume_to_slices", vol_s.detach(), mt)]
    total = 0.0
    for name, student, teacher in order:
        value = reference_dino(student, teacher, c, V, 0.1, 0.04)
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-5), name
        total += value.item()
        c = _ema(c, teacher)
    assert terms["total"].item() == pytest.approx(total, rel=1e-5)
    assert torch.allclose(loss_fn.dino.center, c.float(), atol=1e-6)
    terms["total"].backward()
    assert vol_s.grad.abs().sum() > 0 and slc_s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="teacher_slices"):
        loss_fn(vol_s, vol_t, slc_s, torch.randn(V * B + 1, S, K), 0.04)


@pytest.mark.parametrize("loss_cls", [UniMissPlusLoss, CrossDimensionDINOLoss])
def test_composite_losses_build_one_checked_dino(loss_cls):
    with pytest.raises(ValueError, match="center_update must be 'per_term' or 'once', got 'twice'"):
        loss_cls(K, center_update="twice")
    loss_fn = loss_cls(K, student_temp=0.2, center_momentum=0.5, n_views=3, center_update="once")
    dino = loss_fn.dino
    assert (dino.out_dim, dino.student_temp, dino.center_momentum, dino.n_teacher_views) == (K, 0.2, 0.5, 3)
    assert loss_fn.center_update == "once" and dino.center.shape == (1, K)
