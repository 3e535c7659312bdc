"""DeepClusterV2Loss against a plain-loop oracle, memory bank, spherical k-means, gradients and errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unimiss_monai.losses.deepcluster_v2 import DeepClusterV2Loss


def unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def reference_deepcluster(views, prototypes, labels, temperature=0.1):
    """Mean over prototype sets h of the mean, over every (view, sample) with a label, of
    -log softmax(z . c_h / T)[label]."""
    per_set = []
    for h, c in enumerate(prototypes):
        terms = []
        for z in views:
            for i in range(z.shape[0]):
                target = int(labels[h][i])
                if target < 0:
                    continue
                logits = [float(z[i].double() @ c[j].double()) / temperature for j in range(c.shape[0])]
                top = max(logits)
                log_norm = top + math.log(sum(math.exp(v - top) for v in logits))
                terms.append(log_norm - logits[target])
        per_set.append(sum(terms) / len(terms))
    return sum(per_set) / len(per_set)


def test_matches_reference_and_skips_unassigned_samples():
    batch, dim, sizes = 5, 8, (4, 3)
    loss_fn = DeepClusterV2Loss(num_samples=20, embed_dim=dim, num_prototypes=sizes)
    idx = torch.tensor([3, 7, 0, 19, 11])
    labels = [torch.tensor([0, 3, 1, -1, 2]), torch.tensor([2, 2, -1, 0, 1])]
    for h in range(2):
        loss_fn.assignments[h, idx] = labels[h]
    views = [unit(batch, dim) for _ in range(3)]
    prototypes = [unit(k, dim) for k in sizes]
    got = loss_fn(views, prototypes, idx)
    assert got.item() == pytest.approx(reference_deepcluster(views, prototypes, labels), rel=1e-5)
    assert torch.allclose(loss_fn(torch.cat(views), prototypes, idx, n_views=3), got)


def test_memory_bank_stores_normalised_assignment_views():
    loss_fn = DeepClusterV2Loss(num_samples=10, embed_dim=4, num_prototypes=2, n_assign_views=2)
    views = [torch.randn(3, 4) * 5 for _ in range(3)]
    idx = torch.tensor([9, 2, 4])
    loss_fn.update_memory(views, idx)
    for v in range(2):
        assert torch.allclose(loss_fn.memory[v, idx], F.normalize(views[v], dim=1))
    assert loss_fn.memory_filled.nonzero().flatten().tolist() == [2, 4, 9]


def test_kmeans_finds_separated_clusters_and_writes_the_prototypes():
    dim, per_cluster = 6, 5
    directions = torch.eye(dim)[:3]
    points = F.normalize(directions.repeat_interleave(per_cluster, 0) + 0.05 * torch.randn(3 * per_cluster, dim), dim=1)
    loss_fn = DeepClusterV2Loss(num_samples=15, embed_dim=dim, num_prototypes=(3, 3), n_assign_views=1, kmeans_iters=5)
    loss_fn.update_memory([points], torch.arange(15))
    prototypes = [torch.zeros(3, dim), torch.zeros(3, dim)]
    # a fixed seed whose initial centroids fall in three different clusters (k-means from a bad start may merge two)
    centroids = loss_fn.cluster_memory(prototypes, generator=torch.Generator().manual_seed(0))
    truth = torch.arange(3).repeat_interleave(per_cluster)
    for h in range(2):
        labels = loss_fn.assignments[h]
        # one label per true cluster and three different labels: the same partition up to renaming
        assert all(labels[truth == c].unique().numel() == 1 for c in range(3)) and labels.unique().numel() == 3
        assert torch.equal(prototypes[h], centroids[h])
        assert torch.allclose(centroids[h].norm(dim=1), torch.ones(3), atol=1e-5)
        # each centroid points along its cluster's direction
        assert (centroids[h] @ directions.t()).max(dim=1).values.min() > 0.99
        # assignments are the nearest centroid of every stored embedding
        assert torch.equal(labels, (points @ centroids[h].t()).argmax(dim=1))


def test_gradients_reach_embeddings_and_prototypes():
    loss_fn = DeepClusterV2Loss(num_samples=8, embed_dim=4, num_prototypes=3)
    loss_fn.assignments[0] = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    z = unit(2 * 4, 4).requires_grad_()
    c = unit(3, 4).requires_grad_()
    loss_fn(z, [c], torch.arange(4), n_views=2).backward()
    assert z.grad.abs().sum() > 0 and c.grad.abs().sum() > 0 and torch.isfinite(z.grad).all()


def test_bad_input():
    loss_fn = DeepClusterV2Loss(num_samples=8, embed_dim=4, num_prototypes=3)
    with pytest.raises(ValueError, match="memory bank is empty"):
        loss_fn.cluster_memory()
    with pytest.raises(ValueError, match="no sample of this batch has a cluster"):
        loss_fn([unit(2, 4)] * 2, [unit(3, 4)], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 8\)"):
        loss_fn.update_memory([unit(2, 4)] * 2, torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="prototype set 0 must have shape"):
        loss_fn.assignments[0, :2] = 0
        loss_fn([unit(2, 4)] * 2, [unit(5, 4)], torch.tensor([0, 1]))
    loss_fn.update_memory([unit(2, 4)] * 2, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2 samples in the memory bank for 3 clusters"):
        loss_fn.cluster_memory()
