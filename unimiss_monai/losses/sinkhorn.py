"""Sinkhorn-Knopp equipartition of a batch over prototypes (the SwAV cluster assignment).

- [0]: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments" (SwAV),
  NeurIPS 2020, https://arxiv.org/abs/2006.09882
- [1]: Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013.

Convention (stated once, tested in tests/losses/test_sinkhorn.py): for scores ``(B, K)`` the result ``Q`` has shape
``(B, K)``; every **row** (sample) sums to exactly 1, a soft assignment of that sample over the ``K`` prototypes, and
every **column** (prototype) sums to ``B / K`` up to the residual of the last iteration. Equivalently ``Q / B`` is a
transport plan whose sample marginal is ``1/B`` and whose prototype marginal is ``1/K`` ("rows sum to 1/K" in the
``(K, B)`` layout of the reference code). Each iteration first rescales the prototype marginal, then the sample
marginal, so the sample constraint is the one met exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from unimiss_monai.utils.dist import in_process_group

__all__ = ["sinkhorn_knopp"]


def _global_logsumexp_over_samples(log_q: Tensor) -> Tensor:
    """``log sum_b exp(log_q[b, k])`` over the samples of every rank, ``(1, K)``.

    Done as a max-shifted sum so that the all-reduce sees finite numbers whatever the score range.
    """
    shift = log_q.amax(dim=0, keepdim=True).detach()
    if in_process_group():
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    total = torch.exp(log_q - shift).sum(dim=0, keepdim=True)
    if in_process_group():
        dist.all_reduce(total)
    return shift + torch.log(total)


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, epsilon: float = 0.05, n_iters: int = 3) -> Tensor:
    """Soft assignments of ``B`` samples to ``K`` prototypes with equal prototype mass (SwAV, [0] Alg. 1).

    Computes ``Q = diag(u) exp(scores / epsilon) diag(v)`` with ``n_iters`` alternating rescalings, in the log
    domain so that sharp scores (small ``epsilon``) neither overflow nor underflow. Under ``torch.distributed`` the
    prototype marginal is taken over the samples of all ranks (the global batch), as in SwAV; ``B`` is then the
    global batch size.

    Args:
        scores: ``(B, K)`` similarities of samples to prototypes (e.g. cosine scores in [-1, 1]).
        epsilon: entropic regularisation; smaller is closer to a hard assignment. Defaults to 0.05 (SwAV).
        n_iters: Sinkhorn iterations. Defaults to 3 (SwAV: enough for training, not for convergence).

    Returns:
        ``(B, K)`` float32 assignments: rows sum to 1, columns to ``B / K`` (approximately, see the module docstring).
        Detached.
    """
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"sinkhorn_knopp: scores must have shape (B, K) with B, K >= 1, got {tuple(scores.shape)}.")
    if epsilon <= 0:
        raise ValueError(f"sinkhorn_knopp: epsilon must be > 0, got {epsilon}.")
    if n_iters < 1:
        raise ValueError(f"sinkhorn_knopp: n_iters must be >= 1, got {n_iters}.")
    if not torch.isfinite(scores).all():
        raise ValueError("sinkhorn_knopp: scores contain NaN or inf; check the embeddings and prototypes feeding it.")
    n_protos = scores.shape[1]
    batch = torch.tensor(float(scores.shape[0]), device=scores.device)
    if in_process_group():
        dist.all_reduce(batch)
    log_q = scores.detach().double() / epsilon
    # the initial normalisation to total mass 1 of the reference is a constant shift that the first prototype
    # rescaling absorbs, so it is left out
    log_b = torch.log(batch).double()
    log_k = torch.log(torch.tensor(float(n_protos), dtype=torch.float64, device=scores.device))
    for _ in range(n_iters):
        # prototype marginal: each column of Q / B sums to 1 / K
        log_q = log_q - _global_logsumexp_over_samples(log_q) - log_k
        # sample marginal: each row of Q / B sums to 1 / B
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_b
    return torch.exp(log_q + log_b).float()
