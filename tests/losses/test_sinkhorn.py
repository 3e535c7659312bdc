"""Sinkhorn-Knopp codes: the stated marginals, a 3x2 hand computation, a plain-loop oracle and stability."""

from __future__ import annotations

import math

import pytest
import torch

from sinkhorn_reference import reference_sinkhorn

from unimiss_monai.losses.sinkhorn import sinkhorn_knopp

# exp(scores / eps) = M = [[1, 2], [2, 1], [1, 1]], total mass 9.
# prototype step: column sums of M / 9 are 4/9 and 4/9 -> scale each to 1/2: M / 8
# sample step: row sums 3/8, 3/8, 2/8 -> scale each to 1/3: [1/9, 2/9], [2/9, 1/9], [1/6, 1/6]
# times B = 3: rows sum to 1 and, here, columns to B/K = 3/2 exactly after one iteration
HAND_M = torch.tensor([[1.0, 2.0], [2.0, 1.0], [1.0, 1.0]])
HAND_Q = torch.tensor([[1 / 3, 2 / 3], [2 / 3, 1 / 3], [1 / 2, 1 / 2]])


@pytest.mark.parametrize("epsilon", [1.0, 0.05])
def test_hand_computation_3x2(epsilon):
    q = sinkhorn_knopp(epsilon * HAND_M.log(), epsilon=epsilon, n_iters=1)
    assert torch.allclose(q, HAND_Q, atol=1e-6)
    assert torch.allclose(q.sum(dim=1), torch.ones(3), atol=1e-6)  # each sample: a distribution over prototypes
    assert torch.allclose(q.sum(dim=0), torch.full((2,), 1.5), atol=1e-6)  # each prototype: B / K
    # already doubly stochastic, so further iterations change nothing
    assert torch.allclose(sinkhorn_knopp(epsilon * HAND_M.log(), epsilon=epsilon, n_iters=5), HAND_Q, atol=1e-6)


@pytest.mark.parametrize("n_iters", [1, 3])
@pytest.mark.parametrize("shape", [(3, 2), (7, 5)])
def test_matches_plain_loop_reference(n_iters, shape):
    scores = torch.nn.functional.normalize(torch.randn(*shape), dim=1)  # cosine-like scores in [-1, 1]
    got = sinkhorn_knopp(scores, epsilon=0.05, n_iters=n_iters)
    assert torch.allclose(got.double(), reference_sinkhorn(scores, 0.05, n_iters), atol=1e-5)


def test_converges_to_doubly_stochastic():
    batch, k = 12, 4
    q = sinkhorn_knopp(torch.randn(batch, k) * 0.3, epsilon=0.05, n_iters=300)
    assert torch.allclose(q.sum(dim=1), torch.ones(batch), atol=1e-5)
    assert torch.allclose(q.sum(dim=0), torch.full((k,), batch / k), atol=1e-3)
    assert (q >= 0).all()


def test_three_iterations_meet_the_sample_marginal_exactly():
    scores = torch.nn.functional.normalize(torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    q = sinkhorn_knopp(scores.clone().requires_grad_())
    assert torch.allclose(q.sum(dim=1), torch.ones(16), atol=1e-5)
    assert not q.requires_grad
    # the defaults are 3 iterations at epsilon 0.05: the explicit call and the plain-loop reference agree
    assert torch.equal(q, sinkhorn_knopp(scores, epsilon=0.05, n_iters=3))
    assert torch.allclose(q.double(), reference_sinkhorn(scores, 0.05, 3), atol=1e-5)
    # 2 or 4 iterations give other codes, so the comparison above tells the count apart
    for n in (2, 4):
        assert not torch.allclose(q.double(), reference_sinkhorn(scores, 0.05, n), atol=1e-5), n


def test_extreme_scores_stay_finite():
    # exp(1e4 / 0.05) overflows in any precision; the log-domain iterations do not
    scores = torch.randn(6, 3) * 1e4
    q = sinkhorn_knopp(scores)
    assert torch.isfinite(q).all() and torch.allclose(q.sum(dim=1), torch.ones(6), atol=1e-5)
    assert math.isclose(float(q.sum()), 6.0, rel_tol=1e-5)


@pytest.mark.parametrize(
    "scores, kwargs, match",
    [
        (torch.randn(4), {}, "shape"),
        (torch.randn(4, 3), {"epsilon": 0.0}, "epsilon"),
        (torch.randn(4, 3), {"n_iters": 0}, "n_iters"),
        (torch.tensor([[0.0, float("nan")]]), {}, "NaN"),
    ],
)
def test_bad_input(scores, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sinkhorn_knopp(scores, **kwargs)
