"""Projection head with prototypes for clustering objectives (SwAV, DeepCluster-v2).

- [0]: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments", NeurIPS 2020,
  https://arxiv.org/abs/2006.09882
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClusteringHead"]


class ClusteringHead(nn.Module):
    """``Linear -> BatchNorm -> ReLU -> Linear`` to ``out_dim``, L2-normalised, plus one or more prototype sets
    (bias-free linears ``(K_h, out_dim)``) that the clustering losses read as weights.

    SwAV uses one set (:attr:`prototype_weights` ``[0]``), DeepCluster-v2 several (e.g. three of 3000). The losses
    take ``(embeddings, prototype weights)``; keep the prototypes on the unit sphere with
    :meth:`normalize_prototypes` before each step, and call :meth:`cancel_prototype_gradients` after ``backward``
    to keep them fixed for the first ``freeze_prototypes_niters`` iterations (SwAV: 313, one epoch at batch 4096;
    scale it with the number of iterations per epoch).

    Args:
        in_dim: input width (the embedding width of the network).
        hidden_dim: MLP hidden width; 0 for a single linear. Defaults to 2048.
        out_dim: embedding width ``D``. Defaults to 128.
        num_prototypes: ``K`` or one ``K_h`` per set. Defaults to 3000.
        freeze_prototypes_niters: iterations during which the prototypes are not updated. Defaults to 0.

    Examples::

        >>> head = ClusteringHead(256, num_prototypes=100)
        >>> z = head(torch.randn(8, 256))                              # (8, 128), unit rows
        >>> scores = z @ head.prototype_weights[0].t()                 # (8, 100)
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 128,
        num_prototypes: int | Sequence[int] = 3000,
        freeze_prototypes_niters: int = 0,
    ) -> None:
        super().__init__()
        sizes = (num_prototypes,) if isinstance(num_prototypes, int) else tuple(int(k) for k in num_prototypes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"ClusteringHead: num_prototypes must be positive, got {num_prototypes!r}.")
        if freeze_prototypes_niters < 0:
            raise ValueError(f"ClusteringHead: freeze_prototypes_niters must be >= 0, got {freeze_prototypes_niters}.")
        if hidden_dim > 0:
            self.projection: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden_dim),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, out_dim),
            )
        else:
            self.projection = nn.Linear(in_dim, out_dim)
        self.prototypes = nn.ModuleList(nn.Linear(out_dim, k, bias=False) for k in sizes)
        self.freeze_prototypes_niters = freeze_prototypes_niters
        self.normalize_prototypes()

    @property
    def prototype_weights(self) -> list[torch.Tensor]:
        """The prototype matrices ``(K_h, D)``, one per set."""
        return [p.weight for p in self.prototypes]

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Project every prototype back onto the unit sphere (SwAV does this before each step)."""
        for p in self.prototypes:
            p.weight.copy_(F.normalize(p.weight, dim=1))

    def cancel_prototype_gradients(self, iteration: int) -> None:
        """Drop the prototype gradients (call after ``backward``) while ``iteration < freeze_prototypes_niters``."""
        if iteration >= self.freeze_prototypes_niters:
            return
        for p in self.prototypes:
            p.weight.grad = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> L2-normalised embeddings (N, out_dim)."""
        return F.normalize(self.projection(x), dim=1)
