"""UniMiSS / UniMiSS+ segmentation network for 2D X-rays or 3D CT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unimiss_monai.networks.heads import SegmentationHead
from unimiss_monai.networks.nets.decoder import MiTDecoder
from unimiss_monai.networks.nets.encoder import MiTEncoder
from unimiss_monai.networks.nets.task_common import FineTuneMixin

__all__ = ["UniMissSegmentation"]


class UniMissSegmentation(FineTuneMixin, nn.Module):
    """MiT / MiT+ encoder, U-like transformer decoder with conv tail, 1x1 conv logits at the input size.

    Args:
        spatial_dims: 2 (X-ray) or 3 (CT).
        in_channels: input channels.
        out_channels: classes (logits channels).
        variant: ``"mitplus"`` (default), ``"mit_small"`` or ``"mit_tiny"``.
        img_size: training size of the position embeddings; defaults to 224x224 (2D) and 16x96x96 (3D).
            Inputs of other valid sizes (see :func:`valid_input_sizes`) get interpolated embeddings.
        pretrained: checkpoint to initialise encoder and decoder from (see :func:`load_pretrained`).
        deep_supervision: in training mode, return ``(B, 1 + K, out_channels, *spatial)``: the main logits then K
            coarser logits, all resized to the input size (as MONAI ``DynUNet``); ``torch.unbind(out, dim=1)`` gives
            the list ``monai.losses.DeepSupervisionLoss`` takes. In eval mode the main logits only.
        variant_overrides: :class:`VariantConfig` fields (e.g. :func:`tiny_overrides`), plus ``drop_rate``,
            ``attn_drop_rate``, ``drop_path_rate``.

    Examples::

        net = UniMissSegmentation(3, in_channels=1, out_channels=14)
        logits = net(torch.randn(1, 1, 16, 96, 96))  # (1, 14, 16, 96, 96)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        variant: str = "mitplus",
        img_size: Sequence[int] | None = None,
        pretrained: str | None = None,
        deep_supervision: bool = False,
        **variant_overrides,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"UniMissSegmentation: spatial_dims must be 2 or 3, got {spatial_dims!r}")
        rates = {k: variant_overrides.pop(k) for k in ("drop_rate", "attn_drop_rate", "drop_path_rate") if k in variant_overrides}
        self.spatial_dims = spatial_dims
        self.deep_supervision = deep_supervision
        self.encoder = MiTEncoder(variant, spatial_dims, in_channels, img_size, **rates, **variant_overrides)
        self.decoder = MiTDecoder(self.encoder, with_tail=True, **rates)
        self.head = SegmentationHead(spatial_dims, self.decoder.out_channels, out_channels, deep_supervision)
        self.variant = self.encoder.config.name
        if pretrained:
            from unimiss_monai.networks.pretrained import load_pretrained

            load_pretrained(self, pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> logits (B, out_channels, *spatial) (see ``deep_supervision``)."""
        feats, cls = self.encoder.forward_intermediates(x)
        outputs, _ = self.decoder(feats, cls)
        size = tuple(x.shape[2:])
        main, deep = self.head(outputs, size)
        if not (self.deep_supervision and self.training):
            return main
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        return torch.stack([main] + [F.interpolate(d, size=size, mode=mode, align_corners=False) for d in deep], dim=1)
