"""Weighted k-NN classification of embeddings (DINO's k-NN protocol): how well a frozen representation separates
labelled samples, without training anything on it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["knn_accuracy", "knn_predict"]


def knn_predict(embeddings: torch.Tensor, labels: torch.Tensor, k: int = 20, temperature: float = 0.07,
                exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted k-NN prediction of every sample from the others (DINO's k-NN protocol, Wu et al. 2018) on
    L2-normalised embeddings.

    Each sample is classified by its ``k`` most cosine-similar allowed neighbours; a neighbour with similarity ``s``
    votes for its label with weight ``exp(s / temperature)``, and the label with the largest total wins (ties: the
    smaller label index). A sample is never its own neighbour, and ``exclude[i, j]`` removes ``j`` from the
    neighbours of ``i`` (e.g. a crop sharing voxels with ``i``, or one of the same case).

    Args:
        embeddings: ``(N, D)`` embeddings (normalised here), ``N >= 2``.
        labels: ``(N,)`` integer labels in ``[0, C)``.
        k: neighbours per sample; capped at ``N - 1`` (a sample with fewer allowed neighbours uses those it has).
        temperature: softness of the similarity weighting (small: the nearest neighbour dominates).
        exclude: optional ``(N, N)`` bool mask, True where ``j`` must not vote for ``i``.

    Returns:
        ``(N,)`` predicted labels on the device of ``embeddings``; ``-1`` for a sample with no allowed neighbour.
    """
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"knn_accuracy needs (N, D) embeddings and (N,) labels, got {tuple(embeddings.shape)} and {tuple(labels.shape)}")
    n = embeddings.shape[0]
    if n < 2:
        raise ValueError(f"knn_accuracy needs at least 2 samples for leave-one-out, got {n}; add probe items")
    if exclude is not None and exclude.shape != (n, n):
        raise ValueError(f"knn_accuracy: exclude must be ({n}, {n}), got {tuple(exclude.shape)}")
    if int(k) < 1:
        raise ValueError(f"knn_accuracy: k must be at least 1, got {k}")
    device = embeddings.device  # the votes, labels and mask meet the similarities there
    feats = F.normalize(embeddings.double(), dim=1)
    sim = feats @ feats.T
    sim.fill_diagonal_(float("-inf"))  # leave-one-out: a sample is never its own neighbour
    if exclude is not None:
        sim = sim.masked_fill(exclude.to(device).bool(), float("-inf"))
    top_sim, top_idx = sim.topk(min(int(k), n - 1), dim=1)
    labels = labels.to(device).long()
    votes = torch.zeros(n, int(labels.max()) + 1, dtype=torch.float64, device=device)
    votes.scatter_add_(1, labels[top_idx], (top_sim / temperature).exp())  # excluded neighbours: exp(-inf) = 0
    predicted = votes.argmax(dim=1)
    predicted[torch.isinf(top_sim[:, 0])] = -1
    return predicted


def knn_accuracy(embeddings: torch.Tensor, labels: torch.Tensor, k: int = 20, temperature: float = 0.07,
                 exclude: torch.Tensor | None = None) -> float:
    """Fraction of samples whose :func:`knn_predict` label equals their own, over the samples that have at least
    one allowed neighbour (all of them when ``exclude`` is None)."""
    predicted = knn_predict(embeddings, labels, k, temperature, exclude)
    scored = predicted >= 0
    if not scored.any():
        raise ValueError("knn_accuracy: no sample has an allowed neighbour; exclude leaves nothing to compare with")
    return float((predicted[scored] == labels.to(predicted.device).long()[scored]).double().mean())
