"""Encoder + decoder backbones as pretrained by UniMiSS (``MiT``) and UniMiSS+ (``MiTPlus``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.networks.layers import Conv
from torch import nn

from unimiss_monai.networks.blocks.memory_format import channels_last_weights
from unimiss_monai.networks.nets.decoder import MiTDecoder
from unimiss_monai.networks.nets.encoder import MiTEncoder, init_weights
from unimiss_monai.networks.variants import VariantConfig, get_variant

__all__ = ["MiT", "MiTPlus", "UniMissBackbone", "build_backbone"]


class UniMissBackbone(nn.Module):
    """``encoder`` (:class:`MiTEncoder`) + ``decoder`` (:class:`MiTDecoder`), with the timm-style backbone contract
    (``forward_features``, ``forward_intermediates``, ``forward_head``, ``no_weight_decay``,
    ``set_grad_checkpointing``) delegated to the encoder. Its ``state_dict`` is what pretraining saves and what
    :func:`unimiss_monai.networks.load_pretrained` loads into the task networks (same ``encoder.``/``decoder.`` keys).
    """

    def __init__(
        self,
        variant: str | VariantConfig,
        spatial_dims: int | Sequence[int] = (2, 3),
        in_channels: int | Mapping[int, int] | None = None,
        img_size: Sequence[int] | Mapping[int, Sequence[int]] | None = None,
        with_tail: bool = False,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        **variant_overrides,
    ) -> None:
        super().__init__()
        self.encoder = MiTEncoder(
            variant, spatial_dims, in_channels, img_size, drop_rate, attn_drop_rate, drop_path_rate, **variant_overrides
        )
        self.decoder = MiTDecoder(self.encoder, with_tail, drop_rate, attn_drop_rate, drop_path_rate)
        self.variant = self.encoder.config.name
        self.spatial_dims = self.encoder.spatial_dims

    def forward_intermediates(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return self.encoder.forward_intermediates(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(x)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.encoder.forward_head(tokens, pre_logits)

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()} | {
            f"decoder.{n}" for n in self.decoder.no_weight_decay()
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.set_grad_checkpointing(enable)
        self.decoder.set_grad_checkpointing(enable)


class MiT(UniMissBackbone):
    """UniMiSS MiT (ECCV 2022): the normalised decoder CLS token is the self-supervised feature.

    ``forward(x)`` -> (B, ``embed_dim``) with ``embed_dim = 48`` (feed it to :class:`~unimiss_monai.networks.DINOHead`).

    Args:
        variant: ``"mit_small"`` (default) or ``"mit_tiny"``.
        spatial_dims: ``(2, 3)`` for cross-dimensional pretraining, or a single dim.
        with_tail: also build the conv tail used for segmentation (not part of the UniMiSS pretraining model).
        other args: see :class:`UniMissBackbone` / :class:`MiTEncoder`.
    """

    def __init__(self, variant: str | VariantConfig = "mit_small", spatial_dims=(2, 3), in_channels=None,
                 img_size=None, with_tail: bool = False, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, **variant_overrides) -> None:
        if get_variant(variant, **variant_overrides).family != "mit":
            raise ValueError(f"MiT: variant must be mit_tiny or mit_small, got {variant!r}; use MiTPlus for mitplus")
        super().__init__(variant, spatial_dims, in_channels, img_size, with_tail, drop_rate, attn_drop_rate,
                         drop_path_rate, **variant_overrides)
        self.embed_dim = self.encoder.config.decoder_dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, C, D, H, W) -> decoder CLS (B, embed_dim)."""
        return self.embed_with_intermediates(x)[0]

    def embed_with_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(forward(x), forward_intermediates(x)[0])`` from one encoder pass: the decoder CLS (B, embed_dim) and the
        encoder's features (stem outputs, then the four stage maps)."""
        feats, cls = self.encoder.forward_intermediates(x)
        return self.decoder(feats, cls)[1], feats


class MiTPlus(UniMissBackbone):
    """UniMiSS+ MiT+ (TPAMI 2024): the encoder CLS is the self-supervised feature and the decoder reconstructs the
    input (``recon_head``: 1x1 conv to the input channels, 3 for 2D and 1 for 3D by default).

    ``forward(x)`` -> ``(reconstruction (B, C_in, *spatial), cls (B, embed_dim))`` with ``embed_dim = 320``.
    """

    def __init__(self, variant: str | VariantConfig = "mitplus", spatial_dims=(2, 3), in_channels=None,
                 img_size=None, drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 **variant_overrides) -> None:
        if get_variant(variant, **variant_overrides).family != "mitplus":
            raise ValueError(f"MiTPlus: variant must be mitplus, got {variant!r}; use MiT for mit_tiny/mit_small")
        super().__init__(variant, spatial_dims, in_channels, img_size, True, drop_rate, attn_drop_rate,
                         drop_path_rate, **variant_overrides)
        width = self.decoder.out_channels[-1]
        self.recon_head = nn.ModuleDict(
            {f"{d}d": Conv[Conv.CONV, d](width, self.encoder.in_channels[d], kernel_size=1) for d in self.spatial_dims}
        )
        self.recon_head.apply(init_weights)
        self.recon_head.apply(channels_last_weights)
        self.embed_dim = self.encoder.num_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, cls = self.encoder.forward_intermediates(x)
        outputs, _ = self.decoder(feats)
        return self.recon_head[f"{x.ndim - 2}d"](outputs[-1]), cls

    def embed_with_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The encoder CLS (B, embed_dim), the embedding of ``forward``, and the encoder's features (stem outputs, then
        the four stage maps) from one encoder pass, without the reconstruction decoder."""
        feats, cls = self.encoder.forward_intermediates(x)
        return cls, feats


def build_backbone(variant: str = "mitplus", spatial_dims: int | Sequence[int] = (2, 3), **kwargs) -> UniMissBackbone:
    """The pretraining backbone of ``variant``: :class:`MiT` for ``mit_tiny``/``mit_small``, :class:`MiTPlus` for
    ``mitplus``. ``kwargs`` go to the class (``in_channels``, ``img_size``, ``drop_path_rate``, overrides)."""
    family = get_variant(variant, **{k: v for k, v in kwargs.items() if k in _FIELDS}).family
    return (MiT if family == "mit" else MiTPlus)(variant, spatial_dims, **kwargs)


_FIELDS = set(VariantConfig.__dataclass_fields__) - {"name", "family", "extra"}
