"""Heads on the UniMiSS backbones: DINO projection (pretraining), segmentation and classification (fine-tuning)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers import Conv
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from unimiss_monai.networks.blocks.memory_format import channels_last_weights

__all__ = ["ClassificationHead", "DINOHead", "SegmentationHead"]


class DINOHead(nn.Module):
    """DINO projection head: MLP (``nlayers`` linears, GELU) to an L2-normalised bottleneck, then a weight-normalised
    linear layer to ``out_dim`` prototypes (Caron et al., DINO, ICCV 2021; used by UniMiSS / UniMiSS+).

    Args:
        in_dim: backbone feature width.
        out_dim: number of prototypes. Defaults to 65536.
        use_bn: BatchNorm1d after each hidden linear.
        norm_last_layer: fix the weight-norm magnitude ``g`` to 1 (not trained); more stable training.
        nlayers: linears in the MLP. Defaults to 3.
        hidden_dim: MLP hidden width. Defaults to 2048.
        bottleneck_dim: bottleneck width. Defaults to 256.

    Examples::

        head = DINOHead(320, out_dim=65536)
        logits = head(torch.randn(8, 320))  # (8, 65536)
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        use_bn: bool = False,
        norm_last_layer: bool = True,
        nlayers: int = 3,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
    ) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        widths = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < nlayers - 1:
                if use_bn:
                    layers.append(nn.BatchNorm1d(b))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers) if len(layers) > 1 else layers[0]
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, out_dim)."""
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))

    def cancel_last_layer_gradients(self, epoch: int | None = None, freeze_epochs: int = 1) -> None:
        """Drop the last layer's gradients (call after ``backward``) while ``epoch < freeze_epochs``, or always when
        ``epoch`` is None: DINO keeps the prototypes fixed during the first epoch for stability."""
        if epoch is not None and epoch >= freeze_epochs:
            return
        for p in self.last_layer.parameters():
            p.grad = None


class SegmentationHead(nn.Module):
    """1x1(x1) conv logits on the finest decoder map, plus deep-supervision logits on the coarser ones.

    Args:
        spatial_dims: 2 or 3.
        in_channels: decoder output widths, coarse to fine (the last one gives the main output).
        out_channels: number of classes.
        deep_supervision: also build 1x1 convs for the coarser maps.
    """

    def __init__(self, spatial_dims: int, in_channels: Sequence[int], out_channels: int, deep_supervision: bool = False):
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.out = conv(in_channels[-1], out_channels, kernel_size=1)
        self.deep = nn.ModuleList(conv(c, out_channels, kernel_size=1) for c in in_channels[:-1]) if deep_supervision else None
        self.apply(channels_last_weights)

    def forward(self, features: list[torch.Tensor], size: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Main logits resized to ``size`` and deep-supervision logits (finest first, at their own resolution).

        A 1x1 conv commutes with linear interpolation, so upsampling the logits equals the official upsampling of
        the features before the classifier conv.
        """
        mode = "bilinear" if len(size) == 2 else "trilinear"
        main = self.out(features[-1])
        if tuple(main.shape[2:]) != tuple(size):
            main = F.interpolate(main, size=tuple(size), mode=mode, align_corners=False)
        deep = [] if self.deep is None else [conv(f) for conv, f in zip(self.deep, features[:-1])][::-1]
        return main, deep


class ClassificationHead(nn.Module):
    """Pool the backbone tokens (CLS, mean of patch tokens, or both concatenated), LayerNorm, dropout, linear.

    Multi-label capable: it returns raw logits; use a sigmoid / ``BCEWithLogitsLoss`` for multi-label tasks.

    Args:
        in_dim: token width.
        num_classes: number of outputs.
        pool: ``"cls"``, ``"mean"`` or ``"cls+mean"``.
        dropout: dropout before the linear layer.
    """

    POOLS = ("cls", "mean", "cls+mean")

    def __init__(self, in_dim: int, num_classes: int, pool: str = "cls", dropout: float = 0.0) -> None:
        super().__init__()
        if pool not in self.POOLS:
            raise ValueError(f"ClassificationHead: pool must be one of {self.POOLS}, got {pool!r}")
        self.pool = pool
        width = in_dim * (2 if pool == "cls+mean" else 1)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1 + N, C) tokens, CLS first -> pooled (B, C) or (B, 2C)."""
        if self.pool == "cls":
            return tokens[:, 0]
        if self.pool == "mean":
            return tokens[:, 1:].mean(dim=1)
        return torch.cat((tokens[:, 0], tokens[:, 1:].mean(dim=1)), dim=-1)

    def forward(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1 + N, C) -> logits (B, num_classes), or the normalised pooled feature when ``pre_logits``."""
        x = self.norm(self.pool_tokens(tokens))
        return x if pre_logits else self.fc(self.drop(x))
