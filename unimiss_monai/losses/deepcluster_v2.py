"""DeepCluster-v2: cross-entropy to k-means pseudo-labels of a memory bank, with the centroids as prototypes.

- [0]: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments", NeurIPS 2020,
  https://arxiv.org/abs/2006.09882 (DeepCluster-v2 is described there; reference code: github.com/facebookresearch/swav,
  ``main_deepclusterv2.py``)
- [1]: Nguyen et al., "Joint Self-Supervised Image-Volume Representation Learning with Intra-Inter Contrastive
  Clustering", AAAI 2023, https://arxiv.org/abs/2212.01893 (DeepCluster-v2 as the alternative clustering objective)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from unimiss_monai.losses.dino import split_views
from unimiss_monai.utils.dist import in_process_group

__all__ = ["DeepClusterV2Loss"]


def _gather(t: Tensor) -> Tensor:
    """Concatenate ``t`` (same shape on every rank) over ranks; ``t`` itself without a process group."""
    if not in_process_group():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


class DeepClusterV2Loss(nn.Module):
    """Cross-entropy between ``softmax(z_v C_h^T / temperature)`` and the k-means cluster of each sample, averaged over
    views ``v`` and prototype sets ``h``.

    The loss owns a memory bank of the last embeddings of every dataset sample (one bank per assignment view) and
    the table of cluster assignments. One epoch of DeepCluster-v2 is:

    1. before the first epoch, fill the bank with one pass over the data (:meth:`update_memory`);
    2. at the start of every epoch, :meth:`cluster_memory` runs spherical k-means on the bank for every prototype set
       (set ``h`` clusters bank ``h mod n_assign_views``), writes the normalised centroids into the prototype weights
       and stores the assignments of every sample;
    3. every step, ``forward(z, prototypes, indices)`` scores all views against those assignments and
       :meth:`update_memory` stores the new embeddings of the assignment views.

    Samples without an assignment yet (not in the bank at the last clustering) are left out of the mean.

    Args:
        num_samples: size of the dataset (sample indices run over ``0 .. num_samples - 1``).
        embed_dim: embedding width ``D``.
        num_prototypes: clusters ``K`` of each prototype set, e.g. ``(3000, 3000, 3000)`` as in [0]. Defaults to
            ``(3000,)``.
        temperature: softmax temperature. Defaults to 0.1.
        n_assign_views: views kept in the memory bank (the two large crops in [0]). Defaults to 2.
        kmeans_iters: k-means iterations per clustering. Defaults to 10.

    Examples::

        >>> loss_fn = DeepClusterV2Loss(num_samples=100, embed_dim=16, num_prototypes=(10,))
        >>> z = F.normalize(torch.randn(2 * 4, 16), dim=1); idx = torch.arange(4)
        >>> loss_fn.update_memory(z, idx, n_views=2)
    """

    memory: Tensor
    memory_filled: Tensor
    assignments: Tensor

    def __init__(
        self,
        num_samples: int,
        embed_dim: int,
        num_prototypes: int | Sequence[int] = (3000,),
        temperature: float = 0.1,
        n_assign_views: int = 2,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        if isinstance(num_prototypes, int):
            num_prototypes = (num_prototypes,)
        self.num_prototypes = tuple(int(k) for k in num_prototypes)
        if num_samples < 1 or embed_dim < 1:
            raise ValueError(
                f"DeepClusterV2Loss: num_samples and embed_dim must be >= 1, got {num_samples}, {embed_dim}."
            )
        if not self.num_prototypes or min(self.num_prototypes) < 1:
            raise ValueError(f"DeepClusterV2Loss: num_prototypes must be positive, got {num_prototypes!r}.")
        if temperature <= 0 or n_assign_views < 1 or kmeans_iters < 1:
            raise ValueError(
                "DeepClusterV2Loss: need temperature > 0, n_assign_views >= 1 and kmeans_iters >= 1, got "
                f"{temperature}, {n_assign_views}, {kmeans_iters}."
            )
        self.num_samples = num_samples
        self.temperature = temperature
        self.n_assign_views = n_assign_views
        self.kmeans_iters = kmeans_iters
        self.register_buffer("memory", torch.zeros(n_assign_views, num_samples, embed_dim))
        self.register_buffer("memory_filled", torch.zeros(num_samples, dtype=torch.bool))
        # -1: no cluster yet
        self.register_buffer("assignments", torch.full((len(self.num_prototypes), num_samples), -1, dtype=torch.long))

    def _check_indices(self, indices: Tensor, batch: int) -> Tensor:
        if indices.ndim != 1 or indices.shape[0] != batch:
            raise ValueError(f"DeepClusterV2Loss: indices must have shape ({batch},), got {tuple(indices.shape)}.")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise ValueError(
                f"DeepClusterV2Loss: sample indices must lie in [0, {self.num_samples}), got "
                f"[{int(indices.min())}, {int(indices.max())}]; is num_samples the dataset size?"
            )
        return indices.long()

    @torch.no_grad()
    def update_memory(self, embeddings: Tensor | Sequence[Tensor], indices: Tensor, n_views: int | None = None) -> None:
        """Store the embeddings of the first ``n_assign_views`` views of samples ``indices``.

        Args:
            embeddings: ``(V*B, D)`` view-major or a list of ``V`` tensors ``(B, D)``, ``V >= n_assign_views``.
            indices: ``(B,)`` dataset indices of the samples. Under ``torch.distributed`` the embeddings and indices of
                all ranks are gathered, so every rank holds the whole bank (same batch size on every rank).
        """
        views = split_views(embeddings, n_views, "embeddings")
        if len(views) < self.n_assign_views:
            raise ValueError(f"DeepClusterV2Loss: {len(views)} views given, the memory keeps {self.n_assign_views}.")
        idx = _gather(self._check_indices(indices.to(self.memory.device), views[0].shape[0]))
        for v in range(self.n_assign_views):
            self.memory[v, idx] = _gather(F.normalize(views[v].detach().float(), dim=1)).to(self.memory.dtype)
        self.memory_filled[idx] = True

    @torch.no_grad()
    def cluster_memory(
        self, prototypes: Sequence[Tensor] | None = None, generator: torch.Generator | None = None
    ) -> list[Tensor]:
        """Spherical k-means on the memory bank, once per prototype set; refreshes :attr:`assignments`.

        Args:
            prototypes: the prototype weights ``(K_h, D)`` of the head, overwritten in place with the centroids.
            generator: random generator for the initial centroids (rank 0's choice is broadcast under DDP).

        Returns:
            the centroids ``(K_h, D)`` of every prototype set.
        """
        filled = self.memory_filled.nonzero().squeeze(1)
        if filled.numel() == 0:
            raise ValueError("DeepClusterV2Loss: the memory bank is empty; call update_memory over the data first.")
        if prototypes is not None and len(prototypes) != len(self.num_prototypes):
            raise ValueError(
                f"DeepClusterV2Loss: {len(prototypes)} prototype weights for {len(self.num_prototypes)} sets."
            )
        centroids_all = []
        for h, k in enumerate(self.num_prototypes):
            if filled.numel() < k:
                raise ValueError(
                    f"DeepClusterV2Loss: {filled.numel()} samples in the memory bank for {k} clusters; "
                    "fill the bank (update_memory) or lower num_prototypes."
                )
            bank = self.memory[h % self.n_assign_views, filled].float()
            pick = torch.randperm(filled.numel(), generator=generator)[:k].to(bank.device)
            centroids = bank[pick].clone()
            if in_process_group():
                dist.broadcast(centroids, src=0)
            for it in range(self.kmeans_iters + 1):
                labels = (bank @ centroids.t()).argmax(dim=1)
                if it == self.kmeans_iters:
                    break
                sums = torch.zeros_like(centroids).index_add_(0, labels, bank)
                counts = torch.bincount(labels, minlength=k).float()
                # an empty cluster keeps its previous centroid instead of collapsing to zero
                nonempty = counts > 0
                centroids[nonempty] = F.normalize(sums[nonempty] / counts[nonempty, None], dim=1)
            self.assignments[h].fill_(-1)
            self.assignments[h, filled] = labels
            if prototypes is not None:
                if prototypes[h].shape != centroids.shape:
                    raise ValueError(
                        f"DeepClusterV2Loss: prototype set {h} has shape {tuple(prototypes[h].shape)}, the centroids "
                        f"{tuple(centroids.shape)}."
                    )
                prototypes[h].data.copy_(centroids.to(prototypes[h].dtype))
            centroids_all.append(centroids)
        return centroids_all

    def forward(
        self,
        embeddings: Tensor | Sequence[Tensor],
        prototypes: Sequence[Tensor],
        indices: Tensor,
        n_views: int | None = None,
    ) -> Tensor:
        """
        Args:
            embeddings: L2-normalised embeddings ``(V*B, D)`` view-major (pass ``n_views``) or a list of ``V``
                tensors ``(B, D)``.
            prototypes: one weight ``(K_h, D)`` per prototype set (same order as ``num_prototypes``).
            indices: ``(B,)`` dataset indices of the samples.
            n_views: ``V`` when ``embeddings`` is a single tensor.

        Returns:
            scalar float32 loss: mean over prototype sets of the cross-entropy averaged over all views and the
            samples that have an assignment.
        """
        views = split_views(embeddings, n_views, "embeddings")
        idx = self._check_indices(indices.to(self.assignments.device), views[0].shape[0])
        if len(prototypes) != len(self.num_prototypes):
            raise ValueError(
                f"DeepClusterV2Loss: {len(prototypes)} prototype weights for {len(self.num_prototypes)} sets."
            )
        z = torch.cat(views).float()
        total = z.new_zeros(())
        for h, weight in enumerate(prototypes):
            if weight.ndim != 2 or weight.shape != (self.num_prototypes[h], z.shape[1]):
                raise ValueError(
                    f"DeepClusterV2Loss: prototype set {h} must have shape ({self.num_prototypes[h]}, {z.shape[1]}), "
                    f"got {tuple(weight.shape)}."
                )
            targets = self.assignments[h, idx].to(z.device).repeat(len(views))
            if bool((targets < 0).all()):
                raise ValueError(
                    "DeepClusterV2Loss: no sample of this batch has a cluster yet; fill the memory bank and call "
                    "cluster_memory before the first step."
                )
            total = total + F.cross_entropy(z @ weight.float().t() / self.temperature, targets, ignore_index=-1)
        return total / len(prototypes)
