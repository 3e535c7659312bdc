"""A 2D encoder that turns an image (an X-ray, or one CT slice) into one embedding from its multi-scale features.

- [0]: Nguyen et al., "Joint Self-Supervised Image-Volume Representation Learning with Intra-Inter Contrastive
  Clustering", AAAI 2023, https://arxiv.org/abs/2212.01893 (ResNet-50 applied slice by slice)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.networks import nets as monai_nets
from torch import nn

from unimiss_monai.networks.nets.encoder import MiTEncoder
from unimiss_monai.networks.variants import VARIANTS

__all__ = ["RESNET_BACKBONES", "SliceEncoder"]

#: MONAI ResNet factories selectable by name (``"resnet"`` builds ``monai.networks.nets.ResNet`` from kwargs)
RESNET_BACKBONES = ("resnet", "resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200")


class SliceEncoder(nn.Module):
    """2D backbone + global average pooling of its last ``num_scales`` feature maps + a linear projection to
    ``d_model``.

    The backbone is one of MONAI's ResNets built with ``spatial_dims=2`` (``"resnet50"`` as in [0]; ``"resnet"``
    takes ``block``/``layers``/``block_inplanes`` in ``backbone_kwargs``) or the 2D branch of this package's MiT
    encoder (``"mit_tiny"``, ``"mit_small"``, ``"mitplus"``, i.e. :class:`MiTEncoder` with ``spatial_dims=2``;
    overrides such as :func:`~unimiss_monai.networks.tiny_overrides` go in ``backbone_kwargs``).

    Follows the backbone contract of the package: :meth:`forward_intermediates` (multi-scale maps),
    :meth:`forward_features` / ``forward`` (the embedding).

    Args:
        backbone: backbone name, see above. Defaults to ``"resnet50"``.
        in_channels: image channels. Defaults to 1 (CT slices; repeat X-rays' channel or build with 3).
        d_model: embedding width. Defaults to 256.
        num_scales: how many of the deepest feature maps are pooled (1 = the last only). Defaults to 4.
        backbone_kwargs: extra arguments of the backbone constructor. ResNets default to the ImageNet stem
            (``conv1_t_stride=2``; MONAI's default is 1, four times the compute) and ``feed_forward=False``.

    Examples::

        >>> enc = SliceEncoder("resnet18", in_channels=1, d_model=128)
        >>> enc(torch.randn(4, 1, 64, 64)).shape
        torch.Size([4, 128])
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 1,
        d_model: int = 256,
        num_scales: int = 4,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        kwargs = dict(backbone_kwargs or {})
        self.backbone_name = backbone
        self.in_channels = in_channels
        self.d_model = d_model
        if backbone in RESNET_BACKBONES:
            fixed = {"spatial_dims": 2, "n_input_channels": in_channels, "feed_forward": False}
            kwargs = {"conv1_t_stride": 2, **kwargs, **fixed}
            factory = monai_nets.ResNet if backbone == "resnet" else getattr(monai_nets, backbone)
            self.backbone = factory(**kwargs)
            stages = [getattr(self.backbone, f"layer{i}") for i in range(1, 5)]
            # every MONAI ResNet block starts with conv1 of width ``planes``; the block outputs planes * expansion
            widths = [int(s[0].conv1.out_channels * type(s[0]).expansion) for s in stages]
        elif backbone in VARIANTS:
            self.backbone = MiTEncoder(backbone, spatial_dims=2, in_channels=in_channels, **kwargs)
            widths = list(self.backbone.embed_dims)
        else:
            raise ValueError(
                f"SliceEncoder: unknown backbone {backbone!r}; choose one of "
                f"{list(RESNET_BACKBONES) + sorted(VARIANTS)}."
            )
        if not 1 <= num_scales <= 4:
            raise ValueError(f"SliceEncoder: num_scales must be in 1..4, got {num_scales}.")
        self.num_scales = num_scales
        self.feature_widths = widths[-num_scales:]
        self.proj = nn.Linear(sum(self.feature_widths), d_model)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    @property
    def is_resnet(self) -> bool:
        return self.backbone_name in RESNET_BACKBONES

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage maps ``(N, C_i, X_i, Y_i)``, finest first, of images ``x`` ``(N, C, X, Y)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SliceEncoder: expected 2D images (N, {self.in_channels}, X, Y), got {tuple(x.shape)}; a volume "
                "(B, C, Z, X, Y) goes through ImageVolumeNet, which splits it into slices."
            )
        if not self.is_resnet:
            return self.backbone.forward_intermediates(x)[0][-4:]
        net = self.backbone
        x = net.act(net.bn1(net.conv1(x)))
        if not net.no_max_pool:
            x = net.maxpool(x)
        feats = []
        for i in range(1, 5):
            x = getattr(net, f"layer{i}")(x)
            feats.append(x)
        return feats

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``(N, d_model)`` of images ``(N, C, X, Y)``: the pooled maps, concatenated and projected."""
        pooled = [f.mean(dim=(2, 3)) for f in self.forward_intermediates(x)[-self.num_scales:]]
        return self.proj(torch.cat(pooled, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, X, Y) -> (N, d_model)."""
        return self.forward_features(x)

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay (the MiT position embeddings and CLS token)."""
        if self.is_resnet:
            return set()
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}
