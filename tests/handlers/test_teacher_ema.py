import copy

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from unimiss_monai.handlers import TeacherEMAHandler
from unimiss_monai.utils import momentum_schedule


def test_teacher_follows_student_with_scheduled_momentum():
    student = nn.Linear(3, 2)
    teacher = copy.deepcopy(student)
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    expected = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    momenta = []

    def step(engine, batch):
        opt.zero_grad()
        student(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
        m = momentum_schedule(engine.state.iteration - 1, 6, 0.9, 1.0)  # max_steps = 3 epochs * 2 iterations
        momenta.append(m)
        for n, p in student.named_parameters():
            expected[n] = m * expected[n] + (1 - m) * p.detach()

    engine = Engine(step)
    TeacherEMAHandler(student, teacher, base_momentum=0.9).attach(engine)
    engine.run(range(2), max_epochs=3)
    for n, p in teacher.named_parameters():
        assert torch.allclose(p, expected[n], atol=1e-6)
    assert engine.state.teacher_momentum == pytest.approx(momenta[-1])
    assert momenta[0] == pytest.approx(0.9) and momenta[-1] > momenta[1]


def test_custom_momentum_fn_and_validation():
    student, teacher = nn.Linear(2, 2), nn.Linear(2, 2)
    t0 = teacher.weight.detach().clone()
    engine = Engine(lambda e, b: None)
    TeacherEMAHandler(student, teacher, momentum_fn=lambda step: 0.0).attach(engine)
    engine.run([0], max_epochs=1)
    assert torch.equal(teacher.weight, student.weight) and not torch.equal(t0, teacher.weight)
    with pytest.raises(ValueError, match="momentum"):
        TeacherEMAHandler(student, teacher, base_momentum=2.0)
