"""Masked slice-embedding prediction: which slice tokens to hide, and the MSE on the hidden ones.

- [0]: Nguyen et al., "Joint Self-Supervised Image-Volume Representation Learning with Intra-Inter Contrastive
  Clustering", AAAI 2023, https://arxiv.org/abs/2212.01893 (masked feature embedding prediction over slices)
- [1]: Devlin et al., "BERT", NAACL 2019 (masked-token prediction, about 15 % of the tokens)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MaskedEmbeddingLoss", "random_token_mask"]


def random_token_mask(
    key_padding_mask: Tensor, mask_ratio: float = 0.1, generator: torch.Generator | None = None
) -> Tensor:
    """Pick ``ceil(mask_ratio * n_b)`` of the ``n_b`` real slices of every volume to hide (at least one).

    Args:
        key_padding_mask: ``(B, L)`` bool, True at padded slice positions (no real slice there).
        mask_ratio: fraction of real slices to hide, in (0, 1). Defaults to 0.1.
        generator: random generator, for reproducible masks.

    Returns:
        ``(B, L)`` bool, True where the slice embedding is replaced by the mask token; never True at padding.
    """
    if key_padding_mask.ndim != 2 or key_padding_mask.dtype != torch.bool:
        raise ValueError(
            "random_token_mask: key_padding_mask must be a (B, L) bool tensor, got "
            f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}."
        )
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"random_token_mask: mask_ratio must be in (0, 1), got {mask_ratio}.")
    valid = ~key_padding_mask
    lengths = valid.sum(dim=1)
    if bool((lengths == 0).any()):
        raise ValueError("random_token_mask: a sequence has no real slice (all positions padded); drop empty volumes.")
    # random scores, +inf at padding, so the k smallest are k real slices
    noise = torch.rand(key_padding_mask.shape, generator=generator).to(key_padding_mask.device)
    noise = noise.masked_fill(key_padding_mask, math.inf)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    # the product in floating point lands just above an exact integer for some ratios (100 * 0.15 is
    # 15.000000000000002, 100 * 0.15 in float32 rounds to 15.000001): without the tolerance ceil hides one slice more
    n_mask = torch.clamp(torch.ceil(lengths.double() * mask_ratio - 1e-9), min=1).long()
    return (ranks < n_mask[:, None]) & valid


class MaskedEmbeddingLoss(nn.Module):
    """Mean squared error between predicted and original slice embeddings, counted only at masked positions.

    ``loss = sum_{b,l: mask} ||pred[b, l] - target[b, l]||^2 / (D * #masked)``: unmasked (and padded) positions
    contribute nothing, whatever the network predicts there.

    Args:
        detach_target: stop the gradient through the target embeddings. Defaults to True: otherwise the slice
            encoder can lower the loss by shrinking every embedding towards one point instead of the transformer
            learning to predict.

    Examples::

        >>> pred, target = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
        >>> mask = torch.zeros(2, 6, dtype=torch.bool); mask[:, 2] = True
        >>> loss = MaskedEmbeddingLoss()(pred, target, mask)
    """

    def __init__(self, detach_target: bool = True) -> None:
        super().__init__()
        self.detach_target = detach_target

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """
        Args:
            pred: predicted slice embeddings ``(B, L, D)``.
            target: original slice embeddings ``(B, L, D)``.
            mask: ``(B, L)`` bool, True at the masked slice positions (from :func:`random_token_mask`).

        Returns:
            scalar float32 loss.
        """
        if pred.ndim != 3 or pred.shape != target.shape:
            raise ValueError(
                f"MaskedEmbeddingLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be "
                "(B, L, D) of one shape."
            )
        if mask.shape != pred.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"MaskedEmbeddingLoss: mask must be a bool tensor of shape {tuple(pred.shape[:2])}, got {mask.dtype} "
                f"{tuple(mask.shape)}."
            )
        if not bool(mask.any()):
            raise ValueError(
                "MaskedEmbeddingLoss: no masked position in the batch; mask at least one slice "
                "(random_token_mask does)."
            )
        t = target.detach() if self.detach_target else target
        return (pred.float()[mask] - t.float()[mask]).pow(2).mean()
