"""Convolution + instance norm + LeakyReLU, the conv unit of every UniMiSS / UniMiSS+ stem and patch embedding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers import Conv
from torch import nn

__all__ = ["ConvNormAct"]

# under CPU autocast, a convolution reading at most this many channels (the image itself) runs in float32 and hands
# its output on in the autocast type: oneDNN's bfloat16 kernels gain nothing on so few input channels, and for
# MiT-small's 7x7x7 stem of a one-channel CT they were a slow path on an AMX Xeon (forward + backward 77 against 22 ms
# in float32; the whole 3D training step 0.375 against 0.423 s; the other stems on par; docs/performance.md)
IMAGE_CHANNELS = 3


class ConvNormAct(nn.Module):
    """``conv (no bias) -> InstanceNorm (affine) -> LeakyReLU(0.01)``, for 2D or 3D.

    The attribute names ``conv``, ``norm``, ``nonlin`` and the absent conv bias follow the official ``Conv2dBlock`` /
    ``Conv3dBlock`` (UniMiSS ``models/Pacth_embeds.py``), so official weights map one to one.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: convolution kernel.
        stride: convolution stride (int or one per spatial dim).
        padding: convolution padding.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.conv = Conv[Conv.CONV, spatial_dims](
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding, bias=False
        )
        norm_type = nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d
        self.norm = norm_type(out_channels, affine=True)
        self.nonlin = nn.LeakyReLU(negative_slope=1e-2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *S) -> (B, C_out, *S')."""
        if x.device.type == "cpu" and self.conv.in_channels <= IMAGE_CHANNELS and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                y = self.conv(x.float())
            return self.nonlin(self.norm(y.to(torch.get_autocast_dtype("cpu"))))
        return self.nonlin(self.norm(self.conv(x)))
