"""SwAV swapped-prediction loss over online cluster assignments, with an optional embedding queue.

- [0]: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments" (SwAV),
  NeurIPS 2020, https://arxiv.org/abs/2006.09882 (reference code: github.com/facebookresearch/swav)
- [1]: Nguyen et al., "Joint Self-Supervised Image-Volume Representation Learning with Intra-Inter Contrastive
  Clustering", AAAI 2023, https://arxiv.org/abs/2212.01893 (SwAV as the intra (2D) and inter (3D) objective)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unimiss_monai.losses.dino import split_views
from unimiss_monai.losses.sinkhorn import sinkhorn_knopp

__all__ = ["SwAVLoss"]


class SwAVLoss(nn.Module):
    """Predict the Sinkhorn code of one view from the prototype scores of every other view.

    For each assignment view ``a`` (``assign_views``) the codes ``q_a = sinkhorn_knopp(z_a C^T)`` are computed
    without gradient, and every other view ``v`` is scored by the cross-entropy
    ``-sum_k q_a[k] log softmax(z_v C^T / temperature)[k]``, averaged over samples. The loss is the mean over
    the ``V - 1`` other views, then over the assignment views. ``z`` are L2-normalised embeddings ``(B, D)`` and
    ``C`` the prototypes ``(K, D)`` (keep their rows normalised, e.g. with
    :meth:`~unimiss_monai.networks.nets.clustering_head.ClusteringHead.normalize_prototypes` before each step).

    Queue: with ``queue_length > 0`` the loss keeps the last ``queue_length`` embeddings of every assignment view
    (a buffer, saved with the state dict). Once the queue is full and ``forward(..., use_queue=True)`` is called,
    the Sinkhorn equipartition runs over ``queue + batch`` so that small batches still spread over ``K``
    prototypes; the codes of the batch are then the last ``B`` rows. The queue is updated after every forward in
    training mode, used or not (SwAV starts using it after ``epoch_queue_starts`` epochs: pass ``use_queue``
    from the loop). Freezing the prototypes for the first iterations is done on the head
    (``ClusteringHead.cancel_prototype_gradients``).

    Args:
        temperature: softmax temperature of the predicted view. Defaults to 0.1.
        epsilon: Sinkhorn regularisation. Defaults to 0.05.
        sinkhorn_iterations: Sinkhorn iterations. Defaults to 3.
        assign_views: indices of the views whose codes are targets. Defaults to ``(0, 1)``.
        queue_length: embeddings kept per assignment view (0 disables the queue). SwAV uses 3840 for small
            batches; keep it a multiple of the batch size. Defaults to 0.
        embed_dim: embedding width ``D``; required when ``queue_length > 0``.

    Examples::

        >>> loss_fn = SwAVLoss()
        >>> z = F.normalize(torch.randn(2 * 8, 16), dim=1)          # 2 views, B = 8, D = 16
        >>> prototypes = F.normalize(torch.randn(10, 16), dim=1)     # K = 10
        >>> loss = loss_fn(z, prototypes, n_views=2)
    """

    queue: Tensor
    queue_count: Tensor

    def __init__(
        self,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        assign_views: Sequence[int] = (0, 1),
        queue_length: int = 0,
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"SwAVLoss: temperature must be > 0, got {temperature}.")
        if epsilon <= 0 or sinkhorn_iterations < 1:
            raise ValueError(
                f"SwAVLoss: need epsilon > 0 and sinkhorn_iterations >= 1, got {epsilon}, {sinkhorn_iterations}."
            )
        self.assign_views = tuple(int(a) for a in assign_views)
        if not self.assign_views or len(set(self.assign_views)) != len(self.assign_views) or min(self.assign_views) < 0:
            raise ValueError(f"SwAVLoss: assign_views must be distinct view indices >= 0, got {assign_views!r}.")
        if queue_length < 0:
            raise ValueError(f"SwAVLoss: queue_length must be >= 0, got {queue_length}.")
        if queue_length > 0 and not embed_dim:
            raise ValueError("SwAVLoss: a queue (queue_length > 0) needs embed_dim, the width of the embeddings.")
        self.temperature = temperature
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.queue_length = queue_length
        self.register_buffer("queue", torch.zeros(len(self.assign_views), queue_length, embed_dim or 0))
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))

    @property
    def queue_full(self) -> bool:
        """True once ``queue_length`` embeddings have been stored for every assignment view."""
        return self.queue_length > 0 and int(self.queue_count) >= self.queue_length

    def codes(self, embeddings: Tensor, prototypes: Tensor, slot: int, use_queue: bool) -> Tensor:
        """Sinkhorn codes ``(B, K)`` of one assignment view (no gradient); ``slot`` is its queue index."""
        scores = embeddings.detach().float() @ prototypes.detach().float().t()
        if use_queue and self.queue_full:
            queued = self.queue[slot].float() @ prototypes.detach().float().t()
            scores = torch.cat((queued, scores))
        return sinkhorn_knopp(scores, self.epsilon, self.sinkhorn_iterations)[-embeddings.shape[0]:]

    @torch.no_grad()
    def _enqueue(self, slot: int, embeddings: Tensor) -> None:
        n = min(embeddings.shape[0], self.queue_length)
        # newest first: shift the older entries back and write the batch at the front
        newest = embeddings[:n].detach().to(self.queue.dtype)
        self.queue[slot] = torch.cat((newest, self.queue[slot, : self.queue_length - n]))

    def forward(
        self,
        embeddings: Tensor | Sequence[Tensor],
        prototypes: Tensor,
        n_views: int | None = None,
        use_queue: bool = True,
    ) -> Tensor:
        """
        Args:
            embeddings: L2-normalised embeddings ``(V*B, D)`` view-major (pass ``n_views``) or a list of ``V``
                tensors ``(B, D)``; ``V >= 2``.
            prototypes: prototype vectors ``(K, D)`` (the weight of the head's prototype layer); they receive a
                gradient through the predicted views.
            n_views: ``V`` when ``embeddings`` is a single tensor.
            use_queue: run Sinkhorn over the queue as well, once it is full.

        Returns:
            scalar float32 loss.
        """
        views = split_views(embeddings, n_views, "embeddings")
        if len(views) < 2:
            raise ValueError(f"SwAVLoss: needs at least 2 views to swap predictions, got {len(views)}.")
        if max(self.assign_views) >= len(views):
            raise ValueError(f"SwAVLoss: assign_views {self.assign_views} index past the {len(views)} views given.")
        if prototypes.ndim != 2 or prototypes.shape[1] != views[0].shape[1]:
            raise ValueError(
                f"SwAVLoss: prototypes must have shape (K, {views[0].shape[1]}) to match the embeddings, "
                f"got {tuple(prototypes.shape)}."
            )
        if self.queue_length > 0 and self.queue.shape[-1] != views[0].shape[1]:
            raise ValueError(
                f"SwAVLoss: embed_dim={self.queue.shape[-1]} but the embeddings have width {views[0].shape[1]}."
            )
        log_probs = [F.log_softmax(v.float() @ prototypes.float().t() / self.temperature, dim=1) for v in views]
        total = log_probs[0].new_zeros(())
        for slot, a in enumerate(self.assign_views):
            q = self.codes(views[a], prototypes, slot, use_queue)
            others = [lp for v, lp in enumerate(log_probs) if v != a]
            total = total + sum(-(q * lp).sum(dim=1).mean() for lp in others) / len(others)
        if self.training and self.queue_length > 0:
            for slot, a in enumerate(self.assign_views):
                self._enqueue(slot, views[a])
            self.queue_count.add_(views[0].shape[0])
        return total / len(self.assign_views)
