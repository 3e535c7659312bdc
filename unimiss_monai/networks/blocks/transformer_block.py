"""Pre-norm transformer block shared by the 2D and 3D branches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers import DropPath
from torch import nn

from unimiss_monai.networks.blocks.attention import SpatialReductionAttention
from unimiss_monai.networks.blocks.mlp import Mlp

__all__ = ["TransformerBlock"]


class TransformerBlock(nn.Module):
    """``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, with stochastic depth on both branches.

    Only the reduction convs inside :class:`SpatialReductionAttention` depend on the dimensionality; everything
    else is shared by X-ray (2D) and CT (3D) tokens.

    Args:
        dim: token width.
        num_heads: attention heads.
        spatial_dims: dimensionalities to support, e.g. ``(2, 3)``.
        sr_ratio: key/value spatial reduction.
        depthwise_sr: depthwise reduction conv (UniMiSS+).
        mlp_ratio: MLP hidden width / ``dim``.
        qkv_bias: bias on q/kv projections.
        norm_eps: LayerNorm epsilon of ``norm1``/``norm2`` (1e-6 in the encoders, 1e-5 in the decoders).
        drop: dropout after the attention projection and in the MLP.
        attn_drop: dropout on attention weights.
        drop_path: stochastic depth rate.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        spatial_dims: Sequence[int] = (2, 3),
        sr_ratio: int = 1,
        depthwise_sr: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        norm_eps: float = 1e-6,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = SpatialReductionAttention(
            dim, num_heads, spatial_dims, sr_ratio, depthwise_sr, qkv_bias, attn_drop=attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """(B, N, C) tokens over a patch grid (H, W) or (D, H, W) -> (B, N, C)."""
        x = x + self.drop_path(self.attn(self.norm1(x), grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))
