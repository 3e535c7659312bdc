"""Convolution weights stored channels-last: the layout of the token maps that these networks' convolutions read.

A stage's token map is a view of its ``(B, N, C)`` tokens, so it lies channels-last. PyTorch runs a convolution in
channels-last order when its input or its weight is, and copies the other one into that order first: with the weights
in the default channels-first layout, every forward and backward began by copying each weight (with the autocast
casts, ``copy_`` was a fifth of a MiT-small 3D training step under bfloat16 autocast). Stored channels-last, measured
on a 2-core AMX Xeon, interleaved in one process against the same network with channels-first weights: training steps
1.08-1.11x faster in 3D (float32 and bfloat16 autocast) and 1.02-1.05x in 2D (bfloat16), and the segmentation
network's forward over one 32x128x128 window under bfloat16 autocast 1.05x (MiT-small) and 1.17x (MiT+) faster, its
output the same to the last bit on that machine; in float32 the two layouts agree within rounding
(docs/performance.md). The spatial-reduction attention's per-patch product also reads such a weight without a copy.

Module methods keep the layout: ``.to(device/dtype)``, ``load_state_dict`` and ``copy.deepcopy`` preserve strides.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["channels_last_weights"]

_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def channels_last_weights(module: nn.Module) -> None:
    """Store ``module``'s weight channels-last in place if it is a 2D or 3D (transposed) convolution; for
    ``nn.Module.apply``. The parameter objects stay the same, so an optimizer built before still holds them."""
    if isinstance(module, _CONVS):
        module.to(memory_format=_FORMATS[module.weight.dim()])
