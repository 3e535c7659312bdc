"""UniMiSS / UniMiSS+ classification network for 2D X-rays or 3D CT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unimiss_monai.networks.heads import ClassificationHead
from unimiss_monai.networks.nets.encoder import MiTEncoder
from unimiss_monai.networks.nets.task_common import FineTuneMixin

__all__ = ["UniMissClassifier"]


class UniMissClassifier(FineTuneMixin, nn.Module):
    """MiT / MiT+ encoder and a :class:`ClassificationHead` on its last-stage tokens.

    Args:
        spatial_dims: 2 (X-ray) or 3 (CT).
        in_channels: input channels.
        num_classes: outputs; raw logits, so multi-label tasks use a sigmoid loss.
        variant: ``"mitplus"`` (default), ``"mit_small"`` or ``"mit_tiny"``.
        img_size: training size of the position embeddings (defaults 224x224 / 16x96x96).
        pretrained: checkpoint for the encoder (see :func:`load_pretrained`).
        pool: ``"cls"``, ``"mean"`` (patch tokens) or ``"cls+mean"``.
        dropout: dropout before the linear classifier.
        variant_overrides: :class:`VariantConfig` fields, plus ``drop_rate``, ``attn_drop_rate``, ``drop_path_rate``.

    Examples::

        net = UniMissClassifier(2, in_channels=1, num_classes=14, pool="cls+mean")
        logits = net(torch.randn(2, 1, 224, 224))  # (2, 14)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        variant: str = "mitplus",
        img_size: Sequence[int] | None = None,
        pretrained: str | None = None,
        pool: str = "cls",
        dropout: float = 0.0,
        **variant_overrides,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"UniMissClassifier: spatial_dims must be 2 or 3, got {spatial_dims!r}")
        self.spatial_dims = spatial_dims
        self.encoder = MiTEncoder(variant, spatial_dims, in_channels, img_size, **variant_overrides)
        self.head = ClassificationHead(self.encoder.num_features, num_classes, pool, dropout)
        self.variant = self.encoder.config.name
        if pretrained:
            from unimiss_monai.networks.pretrained import load_pretrained

            load_pretrained(self, pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(x)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(tokens, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> logits (B, num_classes)."""
        return self.head(self.encoder.forward_features(x))
