"""Overlapping strided-conv patch embedding (encoder) and transposed-conv patch expansion (decoder), 2D or 3D."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers import Conv
from torch import nn

from unimiss_monai.networks.blocks.conv import ConvNormAct

__all__ = ["PatchEmbed", "PatchExpand"]


class PatchEmbed(nn.Module):
    """Downsample by ``stride`` with a 3x3(x3) ``ConvNormAct`` (``proj``), plus an optional stride-1 ``proj1``
    (UniMiSS+ ``is_proj1``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        embed_dim: output channels (token width).
        stride: downsampling factor, int or one per dim (UniMiSS+ 3D uses (1, 2, 2) in the last two stages).
        extra_conv: add ``proj1``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, embed_dim: int, stride: int | Sequence[int] = 2, extra_conv: bool = False
    ) -> None:
        super().__init__()
        self.proj = ConvNormAct(spatial_dims, in_channels, embed_dim, kernel_size=3, stride=stride, padding=1)
        self.proj1 = ConvNormAct(spatial_dims, embed_dim, embed_dim, kernel_size=3, stride=1, padding=1) if extra_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *S) -> (B, embed_dim, *S / stride)."""
        x = self.proj(x)
        return x if self.proj1 is None else self.proj1(x)


class PatchExpand(nn.Module):
    """Upsample by ``stride`` with a transposed conv (kernel = stride, ``proj``), plus an optional ``ConvNormAct``
    ``proj1`` (UniMiSS+ decoder).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        embed_dim: output channels.
        stride: upsampling factor, int or one per dim.
        extra_conv: add ``proj1``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, embed_dim: int, stride: int | Sequence[int] = 2, extra_conv: bool = False
    ) -> None:
        super().__init__()
        self.proj = Conv[Conv.CONVTRANS, spatial_dims](in_channels, embed_dim, kernel_size=stride, stride=stride)
        self.proj1 = ConvNormAct(spatial_dims, embed_dim, embed_dim, kernel_size=3, stride=1, padding=1) if extra_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *S) -> (B, embed_dim, *S * stride)."""
        x = self.proj(x)
        return x if self.proj1 is None else self.proj1(x)
