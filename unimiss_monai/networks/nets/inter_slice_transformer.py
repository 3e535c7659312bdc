"""Inter-slice transformer: deformable attention over the sequence of slice embeddings of a volume.

- [0]: Nguyen et al., "Joint Self-Supervised Image-Volume Representation Learning with Intra-Inter Contrastive
  Clustering", AAAI 2023, https://arxiv.org/abs/2212.01893 (the inter deformable attention module)
"""

from __future__ import annotations

import torch
from monai.networks.layers import DropPath
from torch import nn

from unimiss_monai.networks.blocks.deformable_attention_1d import DeformableAttention1d, padding_lengths
from unimiss_monai.networks.blocks.mlp import Mlp

__all__ = ["DeformableTransformerLayer1d", "InterSliceTransformer"]


class DeformableTransformerLayer1d(nn.Module):
    """Pre-norm layer: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, on ``(B, L, C)`` slice tokens."""

    def __init__(
        self, dim: int, num_heads: int, num_points: int = 4, offset_range: float = 2.0, mlp_ratio: float = 4.0,
        drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DeformableAttention1d(dim, num_heads, num_points, offset_range, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, C) -> (B, L, C); ``key_padding_mask`` ``(B, L)``, True at trailing padding."""
        x = x + self.drop_path(self.attn(self.norm1(x), key_padding_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class InterSliceTransformer(nn.Module):
    """Aggregates slice embeddings ``(B, L, C)`` into contextual slice tokens and one volume embedding.

    Slices are the sequence axis (slice ``l`` of the network's ``(B, C, Z, X, Y)`` volume is token ``l``); position
    enters only through the relative bias and the local sampling grid of :class:`DeformableAttention1d`, so any
    number of slices works. Tokens flagged in ``token_mask`` are replaced by a learned mask token before the
    first layer (masked slice-embedding prediction). The volume embedding is the mean of the normalised output
    tokens over the real (non-padded) slices.

    Args:
        d_model: token width. Defaults to 256.
        depth: number of layers. Defaults to 2.
        num_heads: attention heads. Defaults to 8.
        num_points: sampling points per query and head. Defaults to 4.
        offset_range: largest learned sampling shift, in slices. Defaults to 2.0.
        mlp_ratio: MLP hidden width / ``d_model``. Defaults to 4.
        drop: dropout in attention projection and MLP.
        attn_drop: dropout on attention weights.
        drop_path_rate: stochastic depth, increasing linearly over the layers.

    Examples::

        >>> agg = InterSliceTransformer(d_model=64, depth=2, num_heads=4)
        >>> tokens, volume = agg(torch.randn(2, 10, 64))               # (2, 10, 64), (2, 64)
    """

    def __init__(
        self, d_model: int = 256, depth: int = 2, num_heads: int = 8, num_points: int = 4, offset_range: float = 2.0,
        mlp_ratio: float = 4.0, drop: float = 0.0, attn_drop: float = 0.0, drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"InterSliceTransformer: depth must be >= 1, got {depth}.")
        self.d_model = d_model
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d_model))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.layers = nn.ModuleList(
            DeformableTransformerLayer1d(d_model, num_heads, num_points, offset_range, mlp_ratio, drop, attn_drop, r)
            for r in rates
        )
        self.norm = nn.LayerNorm(d_model, eps=1e-6)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self,
        tokens: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            tokens: slice embeddings ``(B, L, C)``.
            key_padding_mask: ``(B, L)`` bool, True at padded positions, which must be trailing (volumes with fewer
                slices than ``L``); every sequence needs at least one real slice.
            token_mask: ``(B, L)`` bool, True where the slice embedding is replaced by the mask token; must not
                cover padding.

        Returns:
            ``(out, volume)``: normalised output tokens ``(B, L, C)`` (zero at padding) and the volume embedding
            ``(B, C)``.
        """
        if tokens.ndim != 3 or tokens.shape[-1] != self.d_model:
            raise ValueError(
                f"InterSliceTransformer: expected tokens (B, L, {self.d_model}), got {tuple(tokens.shape)}."
            )
        b, length, _ = tokens.shape
        lengths = padding_lengths(key_padding_mask, b, length, tokens.device)
        if token_mask is not None:
            if token_mask.shape != (b, length) or token_mask.dtype != torch.bool:
                raise ValueError(
                    f"InterSliceTransformer: token_mask must be a bool ({b}, {length}) tensor, got {token_mask.dtype} "
                    f"{tuple(token_mask.shape)}."
                )
            if key_padding_mask is not None and bool((token_mask & key_padding_mask).any()):
                raise ValueError("InterSliceTransformer: token_mask marks padded positions; mask real slices only.")
            tokens = torch.where(token_mask.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        x = tokens
        for layer in self.layers:
            x = layer(x, key_padding_mask)
        x = self.norm(x)
        real = (torch.arange(length, device=x.device)[None] < lengths[:, None]).unsqueeze(-1).to(x.dtype)
        x = x * real
        volume = x.sum(dim=1) / lengths.unsqueeze(-1).to(x.dtype)
        return x, volume
