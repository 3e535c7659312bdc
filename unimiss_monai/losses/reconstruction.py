"""Pixel/voxel reconstruction MSE used by the UniMiSS+ decoder branch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ReconstructionMSELoss", "minmax_normalize"]


def minmax_normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Rescale every ``(sample, channel)`` of ``x`` ``(B, C, *spatial)`` to ``[0, 1]`` over its spatial axes."""
    flat = x.flatten(2)
    lo = flat.amin(dim=-1, keepdim=True)
    hi = flat.amax(dim=-1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(x)


class ReconstructionMSELoss(nn.Module):
    """Mean squared error between a decoder output and its input image, optionally masked.

    UniMiSS+ compares ``sigmoid(decoder_logits)`` with the input: CT views are first min-max rescaled to ``[0, 1]``
    per volume (``normalize_target=True``), 2D images (X-ray, DRR) are already in ``[0, 1]``.

    Args:
        apply_sigmoid: apply a sigmoid to the prediction (decoder outputs logits). Defaults to True.
        normalize_target: min-max rescale the target per sample and channel. Defaults to False.

    Examples::

        >>> loss = ReconstructionMSELoss(normalize_target=True)(torch.randn(2, 1, 4, 8, 8), torch.randn(2, 1, 4, 8, 8))
    """

    def __init__(self, apply_sigmoid: bool = True, normalize_target: bool = False) -> None:
        super().__init__()
        self.apply_sigmoid = apply_sigmoid
        self.normalize_target = normalize_target

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """
        Args:
            pred: decoder output ``(B, C, *spatial)``.
            target: image ``(B, C, *spatial)``; detached (no gradient flows into the input pipeline).
            mask: optional weights broadcastable to ``pred`` (e.g. ``(B, 1, *spatial)``, 1 = counted); the loss is
                the mask-weighted mean over counted elements.

        Returns:
            scalar float32 loss.
        """
        if pred.shape != target.shape:
            raise ValueError(f"reconstruction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}.")
        if pred.ndim < 3:
            raise ValueError(f"expected (B, C, *spatial) tensors, got {tuple(pred.shape)}.")
        p = torch.sigmoid(pred.float()) if self.apply_sigmoid else pred.float()
        t = target.detach().float()
        if self.normalize_target:
            t = minmax_normalize(t)
        sq = (p - t) ** 2
        if mask is None:
            return sq.mean()
        try:
            w = torch.broadcast_to(mask.to(sq.dtype), sq.shape)
        except RuntimeError as e:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not broadcast to {tuple(sq.shape)}.") from e
        return (sq * w).sum() / w.sum().clamp_min(1e-8)
