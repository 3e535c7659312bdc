"""SwAVLoss against a plain-loop oracle (codes, swapped cross-entropy, queue), gradients, prototype freezing, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sinkhorn_reference import reference_cross_entropy, reference_sinkhorn

from unimiss_monai.losses.sinkhorn import sinkhorn_knopp
from unimiss_monai.losses.swav import SwAVLoss
from unimiss_monai.networks.nets.clustering_head import ClusteringHead


def unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def reference_swav(views, prototypes, assign_views, temperature=0.1, epsilon=0.05, n_iters=3, queues=None):
    """For every assignment view a: codes from Sinkhorn over (queue a, batch a) scores, last B rows; then the mean
    over the other views v of CE(codes, scores_v / T); finally the mean over the assignment views."""
    batch = views[0].shape[0]
    terms = []
    for slot, a in enumerate(assign_views):
        scores_a = views[a].double() @ prototypes.double().t()
        if queues is not None:
            scores_a = torch.cat((queues[slot].double() @ prototypes.double().t(), scores_a))
        codes = reference_sinkhorn(scores_a, epsilon, n_iters)[-batch:]
        others = [v for v in range(len(views)) if v != a]
        terms.append(sum(reference_cross_entropy(codes, views[v].double() @ prototypes.double().t(), temperature)
                         for v in others) / len(others))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("n_views, assign_views", [(2, (0, 1)), (3, (0, 1)), (3, (2,))])
def test_matches_reference(n_views, assign_views):
    batch, dim, k = 5, 8, 6
    views = [unit(batch, dim) for _ in range(n_views)]
    prototypes = unit(k, dim)
    got = SwAVLoss(assign_views=assign_views)(views, prototypes)
    assert got.item() == pytest.approx(reference_swav(views, prototypes, assign_views), rel=1e-4, abs=1e-5)
    stacked = SwAVLoss(assign_views=assign_views)(torch.cat(views), prototypes, n_views=n_views)
    assert torch.allclose(got, stacked)


def test_queue_is_used_once_full_and_holds_the_newest_embeddings():
    batch, dim, k = 4, 8, 5
    loss_fn = SwAVLoss(queue_length=2 * batch, embed_dim=dim)
    prototypes = unit(k, dim)
    first = [unit(batch, dim) for _ in range(2)]
    second = [unit(batch, dim) for _ in range(2)]
    third = [unit(batch, dim) for _ in range(2)]
    # queue not full yet: plain SwAV, queue filled with the assignment views' embeddings afterwards
    assert loss_fn(first, prototypes).item() == pytest.approx(reference_swav(first, prototypes, (0, 1)), rel=1e-4)
    assert not loss_fn.queue_full
    assert loss_fn(second, prototypes).item() == pytest.approx(reference_swav(second, prototypes, (0, 1)), rel=1e-4)
    assert loss_fn.queue_full
    for slot in range(2):  # newest first
        assert torch.allclose(loss_fn.queue[slot], torch.cat((second[slot], first[slot])))
    queues = [loss_fn.queue[s].clone() for s in range(2)]
    got = loss_fn(third, prototypes, use_queue=True)
    assert got.item() == pytest.approx(reference_swav(third, prototypes, (0, 1), queues=queues), rel=1e-4, abs=1e-5)
    # the queue changes the codes (equipartition over 3B rows instead of B)
    assert abs(got.item() - reference_swav(third, prototypes, (0, 1))) > 1e-4
    loss_fn.eval()
    before = loss_fn.queue.clone()
    without = loss_fn(third, prototypes, use_queue=False)
    assert torch.equal(loss_fn.queue, before)  # evaluation does not push into the queue
    assert without.item() == pytest.approx(reference_swav(third, prototypes, (0, 1)), rel=1e-4)


def test_gradients_reach_embeddings_and_prototypes_but_not_through_the_codes():
    batch, dim, k = 6, 8, 4
    z = unit(2 * batch, dim).requires_grad_()
    c = unit(k, dim).requires_grad_()
    loss = SwAVLoss()(z, c, n_views=2)
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert torch.isfinite(c.grad).all() and c.grad.abs().sum() > 0
    # the codes are constants: the gradient equals that of the cross-entropy with fixed targets
    z2, c2 = z.detach().clone().requires_grad_(), c.detach().clone().requires_grad_()
    views = z2.chunk(2)
    codes = [sinkhorn_knopp(v.detach() @ c2.detach().t()) for v in views]

    def ce(q, v):
        return -(q * F.log_softmax(v @ c2.t() / 0.1, dim=1)).sum(1).mean()

    ((ce(codes[0], views[1]) + ce(codes[1], views[0])) / 2).backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-6) and torch.allclose(c.grad, c2.grad, atol=1e-6)


def test_head_freezes_and_normalises_prototypes():
    head = ClusteringHead(16, hidden_dim=8, out_dim=4, num_prototypes=(5, 3), freeze_prototypes_niters=2)
    assert torch.allclose(head.prototype_weights[0].norm(dim=1), torch.ones(5))
    z = head(torch.randn(6, 16))
    assert z.shape == (6, 4) and torch.allclose(z.norm(dim=1), torch.ones(6), atol=1e-5)
    for iteration, frozen in [(0, True), (1, True), (2, False)]:
        head.zero_grad(set_to_none=True)
        SwAVLoss()(head(torch.randn(8, 16)), head.prototype_weights[0], n_views=2).backward()
        head.cancel_prototype_gradients(iteration)
        assert (head.prototypes[0].weight.grad is None) == frozen
        assert head.projection[0].weight.grad is not None  # only the prototypes are frozen
    with torch.no_grad():
        head.prototypes[0].weight.mul_(3.0)
    head.normalize_prototypes()
    assert torch.allclose(head.prototype_weights[0].norm(dim=1), torch.ones(5), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, call, match",
    [
        ({}, lambda f: f([unit(4, 8)], unit(3, 8)), "at least 2 views"),
        ({}, lambda f: f([unit(4, 8)] * 2, unit(3, 5)), "prototypes must have shape"),
        ({"assign_views": (0, 2)}, lambda f: f([unit(4, 8)] * 2, unit(3, 8)), "assign_views"),
        ({"queue_length": 8, "embed_dim": 5}, lambda f: f([unit(4, 8)] * 2, unit(3, 8)), "embed_dim"),
    ],
)
def test_bad_input(kwargs, call, match):
    with pytest.raises(ValueError, match=match):
        call(SwAVLoss(**kwargs))


def test_bad_arguments():
    with pytest.raises(ValueError, match="embed_dim"):
        SwAVLoss(queue_length=8)
    with pytest.raises(ValueError, match="temperature"):
        SwAVLoss(temperature=0.0)
