import copy

import pytest
import torch
from torch import nn

from unimiss_monai.utils import update_momentum


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_update_momentum_formula_and_no_grad():
    student = _net()
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.data.normal_()
    expected = {n: 0.9 * t.detach().clone() + 0.1 * dict(student.named_parameters())[n].detach()
                for n, t in teacher.named_parameters()}
    update_momentum(student, teacher, 0.9)
    for n, t in teacher.named_parameters():
        assert torch.allclose(t, expected[n], atol=1e-7)
        assert t.grad is None
    update_momentum(student, teacher, 0.0)
    for (_, s), (_, t) in zip(student.named_parameters(), teacher.named_parameters()):
        assert torch.equal(s, t)


def test_matches_by_name_not_order_and_unwraps_dataparallel():
    class A(nn.Module):
        def __init__(self, order):
            super().__init__()
            for name in order:
                self.register_parameter(name, nn.Parameter(torch.randn(2)))

    student, teacher = A(["a", "b"]), A(["b", "a"])
    t_a = teacher.a.detach().clone()
    update_momentum(nn.DataParallel(student), teacher, 0.5)
    assert torch.allclose(teacher.a, 0.5 * t_a + 0.5 * student.a.detach())


def test_errors():
    with pytest.raises(ValueError, match="only in student"):
        update_momentum(nn.Linear(2, 2), nn.Linear(2, 2, bias=False), 0.9)
    with pytest.raises(ValueError, match="'weight'"):
        update_momentum(nn.Linear(2, 2), nn.Linear(2, 3), 0.9)
    with pytest.raises(ValueError, match="momentum"):
        update_momentum(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
