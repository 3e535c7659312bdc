import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import ParamSchedulerHandler

from unimiss_monai.utils import (
    ScheduleCalculator,
    cosine_schedule,
    momentum_schedule,
    teacher_temperature_schedule,
    warmup_cosine_schedule,
)


def reference_array(base, final, total, warmup, warmup_start=0.0):
    """Whole schedule as one array, as the reference code precomputes it (linspace warm-up, then cosine)."""
    warm = np.linspace(warmup_start, base, warmup) if warmup else np.array([])
    iters = np.arange(total - warmup)
    return np.concatenate([warm, final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))])


def test_cosine_endpoints_and_midpoint():
    assert cosine_schedule(0, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert cosine_schedule(5, 10, 1.0, 0.0) == pytest.approx(0.5)
    assert cosine_schedule(10, 10, 1.0, 0.0) == pytest.approx(0.0)
    assert cosine_schedule(99, 10, 1.0, 0.0) == 0.0


@pytest.mark.parametrize("warmup", [0, 1, 4])
def test_warmup_cosine_matches_precomputed_array(warmup):
    ref = reference_array(5e-4, 1e-6, 20, warmup, warmup_start=1e-5)
    got = [warmup_cosine_schedule(i, warmup, 20, 5e-4, 1e-6, warmup_start=1e-5) for i in range(20)]
    assert np.allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_momentum_and_teacher_temperature():
    ref = reference_array(0.996, 1.0, 50, 0)
    assert np.allclose([momentum_schedule(i, 50) for i in range(50)], ref)
    temps = [teacher_temperature_schedule(e, 5, 0.04, 0.07) for e in range(8)]
    assert np.allclose(temps[:5], np.linspace(0.04, 0.07, 5)) and temps[5:] == [0.07] * 3
    assert teacher_temperature_schedule(0, 0) == 0.04


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: cosine_schedule(-1, 10, 1, 0), "step"),
        (lambda: cosine_schedule(0, 0, 1, 0), "max_steps"),
        (lambda: warmup_cosine_schedule(0, 10, 10, 1, 0), "warmup_steps"),
        (lambda: momentum_schedule(0, 10, base=1.5), "momentum"),
        (lambda: teacher_temperature_schedule(0, 3, warmup_temp=0), "temperatures"),
        (lambda: ScheduleCalculator("nope"), "unknown schedule"),
    ],
)
def test_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_param_scheduler_handler_drives_lr():
    """ParamSchedulerHandler on ITERATION_STARTED with step_offset=-1: iteration i (0-based) runs with f(i)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=123.0)
    kwargs = {"warmup_steps": 3, "max_steps": 12, "base": 1.0, "final": 0.1}
    seen = []
    engine = Engine(lambda e, b: seen.append(opt.param_groups[0]["lr"]))
    ParamSchedulerHandler(
        parameter_setter=lambda v: [g.__setitem__("lr", v) for g in opt.param_groups],
        value_calculator=ScheduleCalculator("warmup_cosine", step_offset=-1),
        vc_kwargs=dict(kwargs),  # the handler adds current_step to this dict
        event=Events.ITERATION_STARTED,
    ).attach(engine)
    engine.run(range(4), max_epochs=3)
    assert np.allclose(seen, [warmup_cosine_schedule(i, **kwargs) for i in range(12)])
    assert seen[0] == 0.0 and math.isclose(seen[2], 1.0)
