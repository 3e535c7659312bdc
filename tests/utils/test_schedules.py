
import numpy as np
import pytest

from unimiss_monai.utils import (
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
    ],
)
def test_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
