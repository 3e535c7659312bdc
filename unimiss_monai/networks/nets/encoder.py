"""The MiT / MiT+ transformer encoder: one network for 2D X-rays and 3D CT."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from unimiss_monai.networks.blocks.conv import ConvNormAct
from unimiss_monai.networks.blocks.memory_format import channels_last_weights
from unimiss_monai.networks.blocks.patch_embed import PatchEmbed
from unimiss_monai.networks.blocks.pos_embed import PositionEmbedding
from unimiss_monai.networks.blocks.transformer_block import TransformerBlock
from unimiss_monai.networks.variants import VariantConfig, check_input_size, get_variant

__all__ = ["MiTEncoder", "run_blocks", "resolve_dims"]


def resolve_dims(spatial_dims: int | Sequence[int]) -> tuple[int, ...]:
    dims = (spatial_dims,) if isinstance(spatial_dims, int) else tuple(sorted(set(int(d) for d in spatial_dims)))
    if not dims or any(d not in (2, 3) for d in dims):
        raise ValueError(f"spatial_dims must be 2, 3 or (2, 3), got {spatial_dims!r}")
    return dims


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, grid: tuple[int, ...], use_checkpoint: bool) -> torch.Tensor:
    for blk in blocks:
        if use_checkpoint and torch.is_grad_enabled():
            x = checkpoint(blk, x, grid, use_reentrant=False)
        else:
            x = blk(x, grid)
    return x


class MiTEncoder(nn.Module):
    """Hybrid conv + transformer encoder of UniMiSS (MiT) and UniMiSS+ (MiT+).

    A conv stem, then four stages of overlapping strided-conv patch embedding, learnable absolute position embedding
    and spatial-reduction transformer blocks. A CLS token enters stage 1 and is carried to the next stage by a linear
    projection. The stem, patch embeddings, position embeddings and reduction convs exist once per dimensionality
    in ``spatial_dims`` and are picked by the input's ndim; the transformer blocks (and CLS) are shared.

    Args:
        variant: ``"mit_tiny"``, ``"mit_small"`` or ``"mitplus"`` (or a :class:`VariantConfig`).
        spatial_dims: ``2``, ``3`` or ``(2, 3)`` (both branches, for cross-dimensional pretraining).
        in_channels: input channels, an int or ``{2: c2, 3: c3}``. Defaults to the official 3 (2D) and 1 (3D).
        img_size: training size of the position embeddings, a tuple (single dim) or ``{2: (H, W), 3: (D, H, W)}``.
            Defaults to 224x224 and 16x96x96. Other input sizes get interpolated embeddings.
        drop_rate: dropout after position embedding, attention projection and MLP.
        attn_drop_rate: attention-weight dropout.
        drop_path_rate: stochastic depth, increasing linearly over the blocks.
        variant_overrides: fields of :class:`VariantConfig` to change (e.g. a tiny test configuration).

    Examples::

        enc = MiTEncoder("mitplus", spatial_dims=(2, 3))
        feats, cls = enc.forward_intermediates(torch.randn(2, 1, 16, 96, 96))
    """

    def __init__(
        self,
        variant: str | VariantConfig = "mitplus",
        spatial_dims: int | Sequence[int] = (2, 3),
        in_channels: int | Mapping[int, int] | None = None,
        img_size: Sequence[int] | Mapping[int, Sequence[int]] | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        **variant_overrides,
    ) -> None:
        super().__init__()
        self.spatial_dims = resolve_dims(spatial_dims)
        cfg = get_variant(variant, **_img_size_overrides(img_size, self.spatial_dims), **variant_overrides)
        self.config = cfg
        self.in_channels = {
            d: (in_channels.get(d, cfg.in_channels(d)) if isinstance(in_channels, Mapping) else in_channels)
            or cfg.in_channels(d)
            for d in self.spatial_dims
        }
        self.embed_dims = cfg.embed_dims
        self.num_features = cfg.embed_dims[-1]
        self.grad_checkpointing = False

        self.stem = nn.ModuleDict({f"{d}d": self._make_stem(d) for d in self.spatial_dims})
        self.patch_embeds = nn.ModuleList()
        self.pos_embeds = nn.ModuleList()
        prev = cfg.stem_channels[-1]
        for i, dim in enumerate(cfg.embed_dims):
            self.patch_embeds.append(
                nn.ModuleDict(
                    {f"{d}d": PatchEmbed(d, prev, dim, cfg.patch_strides(d)[i], cfg.extra_conv) for d in self.spatial_dims}
                )
            )
            self.pos_embeds.append(
                nn.ModuleDict({f"{d}d": PositionEmbedding(dim, self.stage_grid(d, i), 1) for d in self.spatial_dims})
            )
            prev = dim
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(cfg.depths)).tolist()
        self.blocks = nn.ModuleList()
        for i, dim in enumerate(cfg.embed_dims):
            first = sum(cfg.depths[:i])
            self.blocks.append(
                nn.ModuleList(
                    TransformerBlock(
                        dim, cfg.num_heads[i], self.spatial_dims, cfg.sr_ratios[i], cfg.depthwise_sr, cfg.mlp_ratios[i],
                        qkv_bias=True, norm_eps=1e-6, drop=drop_rate, attn_drop=attn_drop_rate,
                        drop_path=rates[first + j],
                    )
                    for j in range(cfg.depths[i])
                )
            )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dims[0]))
        self.cls_proj = nn.ModuleList(nn.Linear(a, b) for a, b in zip(cfg.embed_dims[:-1], cfg.embed_dims[1:]))
        self.apply(init_weights)
        self.apply(channels_last_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _make_stem(self, d: int) -> nn.ModuleList:
        cfg, strides = self.config, self.config.stem_strides(d)
        if cfg.family == "mit":
            # UniMiSS: one 7x7(x7) conv
            return nn.ModuleList([nn.Sequential(ConvNormAct(d, self.in_channels[d], cfg.stem_channels[0], 7, strides[0], 3))])
        # UniMiSS+: a stride-1 conv block, then a strided block of two convs; both outputs are decoder skips
        c0, c1 = cfg.stem_channels
        return nn.ModuleList(
            [
                nn.Sequential(ConvNormAct(d, self.in_channels[d], c0, 3, strides[0], 1)),
                nn.Sequential(ConvNormAct(d, c0, c1, 3, strides[1], 1), ConvNormAct(d, c1, c1, 3, 1, 1)),
            ]
        )

    def stage_grid(self, spatial_dims: int, stage: int) -> tuple[int, ...]:
        """Patch grid of encoder ``stage`` (0..3) for the training size."""
        size = list(self.config.img_size(spatial_dims))
        for s in list(self.config.stem_strides(spatial_dims)) + list(self.config.patch_strides(spatial_dims)[: stage + 1]):
            size = [a // b for a, b in zip(size, s)]
        return tuple(size)

    # ------------------------------------------------------------------ checks
    def check_input(self, x: torch.Tensor) -> int:
        """Validate ``x`` (B, C, *spatial) and return its spatial dimensionality."""
        d = x.ndim - 2
        if d not in self.spatial_dims:
            built = " or ".join(f"{k}D ({k + 2}-d tensor)" for k in self.spatial_dims)
            raise ValueError(
                f"{self.config.name}: got a {x.ndim}-d input of shape {tuple(x.shape)}; this model is built for {built}"
                " inputs (B, C, *spatial); build it with spatial_dims=(2, 3) to accept both"
            )
        if x.shape[1] != self.in_channels[d]:
            raise ValueError(
                f"{self.config.name}: {d}D input has {x.shape[1]} channels, the model expects {self.in_channels[d]}"
                f" (in_channels); shape {tuple(x.shape)}"
            )
        check_input_size(self.config, d, x.shape[2:])
        return d

    # ------------------------------------------------------------------ forward
    def _forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        key = f"{self.check_input(x)}d"
        feats: list[torch.Tensor] = []
        for stage in self.stem[key]:
            x = stage(x)
            feats.append(x)
        b = x.shape[0]
        cls = self.cls_token.expand(b, -1, -1)
        tokens = cls
        for i in range(4):
            x = self.patch_embeds[i][key](x)
            grid = tuple(x.shape[2:])
            if i > 0:
                cls = self.cls_proj[i - 1](cls)
            tokens = torch.cat((cls, x.flatten(2).transpose(1, 2)), dim=1)
            tokens = self.pos_drop(tokens + self.pos_embeds[i][key](grid).to(tokens.dtype))
            tokens = run_blocks(self.blocks[i], tokens, grid, self.grad_checkpointing and self.training)
            cls = tokens[:, :1]
            x = tokens[:, 1:].transpose(1, 2).reshape(b, -1, *grid)
            feats.append(x)
        return feats, tokens

    def forward_intermediates(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Multi-scale features for decoders.

        Args:
            x: (B, C, H, W) or (B, C, D, H, W).

        Returns:
            ``(features, cls)``: ``features`` lists the stem outputs (1 for MiT, 2 for MiT+) then the four stage maps
            (B, C_i, *grid_i), finest first; ``cls`` is the stage-4 CLS token (B, embed_dims[-1]).
        """
        feats, tokens = self._forward(x)
        return feats, tokens[:, 0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-4 tokens (B, 1 + N, embed_dims[-1]), CLS first (no final norm, as in the official encoder)."""
        return self._forward(x)[1]

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """CLS embedding (B, embed_dims[-1]) from :meth:`forward_features` tokens (the encoder has no classifier)."""
        return tokens[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """CLS embedding (B, embed_dims[-1])."""
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------------ training helpers
    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay: position embeddings and the CLS token."""
        return {n for n, _ in self.named_parameters() if n.startswith("pos_embeds.") or n == "cls_token"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute transformer blocks in backward to save activation memory."""
        self.grad_checkpointing = enable


def init_weights(m: nn.Module) -> None:
    """Official initialisation: trunc-normal linears, Kaiming (fan-out) convs, unit norms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
    elif isinstance(m, (nn.LayerNorm, nn.InstanceNorm2d, nn.InstanceNorm3d)) and m.weight is not None:
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _img_size_overrides(img_size, dims: tuple[int, ...]) -> dict:
    if img_size is None:
        return {}
    if isinstance(img_size, Mapping):
        return {f"img_size{d}d": tuple(int(s) for s in img_size[d]) for d in dims if d in img_size}
    if isinstance(img_size, int):
        return {f"img_size{d}d": (int(img_size),) * d for d in dims}
    size = tuple(int(s) for s in img_size)
    if len(dims) != 1 or len(size) != dims[0]:
        raise ValueError(f"img_size {size} must have one entry per spatial dim {dims}; use {{2: (H, W), 3: (D, H, W)}}")
    return {f"img_size{dims[0]}d": size}
