"""DINOLoss against an independent float64 re-statement, centre maths, gradients and error paths."""

from __future__ import annotations

import math

import pytest
import torch

from dino_reference import reference_dino

from unimiss_monai.losses import DINOLoss


@pytest.mark.parametrize("n_student_views", [2, 4])
@pytest.mark.parametrize("teacher_temp", [0.04, 0.07])
def test_matches_reference(n_student_views, teacher_temp):
    k, batch = 16, 3
    loss_fn = DINOLoss(out_dim=k, student_temp=0.1)
    loss_fn.center.copy_(torch.randn(1, k) * 0.3)
    student, teacher = torch.randn(n_student_views * batch, k), torch.randn(2 * batch, k)
    expected = reference_dino(student, teacher, loss_fn.center.clone(), 2, 0.1, teacher_temp)
    got = loss_fn(student, teacher, teacher_temp)
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_list_input_equals_stacked_and_no_skip_pairs():
    k, batch = 8, 2
    s, t = torch.randn(3 * batch, k), torch.randn(2 * batch, k)
    a = DINOLoss(k)(s, t, 0.05, update_center=False)
    b = DINOLoss(k)(list(s.chunk(3)), list(t.chunk(2)), 0.05, update_center=False)
    assert torch.allclose(a, b)
    no_skip = DINOLoss(k)(s, t, 0.05, skip_same_view=False)
    assert torch.allclose(no_skip.double(), reference_dino(s, t, torch.zeros(1, k), 2, 0.1, 0.05, skip_same=False))


def test_center_update_math():
    k = 5
    loss_fn = DINOLoss(k, center_momentum=0.9)
    c0 = torch.randn(1, k)
    loss_fn.center.copy_(c0)
    teacher = torch.randn(6, k)
    loss_fn(torch.randn(6, k), teacher, 0.04)
    assert torch.allclose(loss_fn.center, 0.9 * c0 + 0.1 * teacher.mean(0, keepdim=True), atol=1e-6)
    before = loss_fn.center.clone()
    loss_fn(torch.randn(6, k), teacher, 0.04, update_center=False)
    assert torch.equal(loss_fn.center, before)


def test_gradient_only_to_student():
    k = 8
    s = torch.randn(4, k, requires_grad=True)
    t = torch.randn(4, k, requires_grad=True)
    DINOLoss(k)(s, t, 0.04).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_extreme_logits_are_finite():
    k = 32
    s = torch.randn(4, k) * 1e4
    t = torch.randn(4, k) * 1e4
    loss_fn = DINOLoss(k)
    loss = loss_fn(s.requires_grad_(), t, 0.04)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert all(math.isfinite(v) for v in loss_fn.diagnostics.values())


def test_diagnostics_detect_collapse():
    k = 64
    loss_fn = DINOLoss(k)
    loss_fn(torch.randn(4, k), torch.zeros(4, k), teacher_temp=0.04)
    uniform = loss_fn.diagnostics
    assert uniform["teacher_entropy"] == pytest.approx(math.log(k), rel=1e-4)  # flat teacher: maximal entropy
    one_hot = torch.zeros(4, k)
    one_hot[:, 3] = 100.0
    loss_fn = DINOLoss(k)
    loss_fn(torch.randn(4, k), one_hot, teacher_temp=0.04)
    d = loss_fn.diagnostics
    assert d["teacher_entropy"] < 1e-3 and d["teacher_batch_entropy"] < 1e-3
    assert d["center_norm"] == pytest.approx(float(loss_fn.center.norm()))


@pytest.mark.parametrize(
    "student, teacher, match",
    [
        (torch.randn(4, 8), torch.randn(5, 8), "multiple of n_views"),
        (torch.randn(5, 8), torch.randn(4, 8), "n_student_views"),
        (torch.randn(4, 7), torch.randn(4, 8), "student view shape"),
        (torch.randn(4, 6), torch.randn(4, 6), "out_dim"),
        (torch.randn(2, 3, 8), torch.randn(4, 8), "n_student_views"),
    ],
)
def test_shape_errors(student, teacher, match):
    with pytest.raises(ValueError, match=match):
        DINOLoss(8)(student, teacher, 0.04)


def test_no_cross_pairs_and_bad_args():
    with pytest.raises(ValueError, match="no cross-view pairs"):
        DINOLoss(8, n_teacher_views=1)(torch.randn(2, 8), torch.randn(2, 8), 0.04)
    with pytest.raises(ValueError, match="teacher_temp"):
        DINOLoss(8)(torch.randn(4, 8), torch.randn(4, 8), 0.0)
    with pytest.raises(ValueError, match="student_temp"):
        DINOLoss(8, student_temp=0)
