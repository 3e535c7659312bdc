"""The U-like transformer decoder of MiT / MiT+, with its conv tail back to the stem resolutions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers import Conv
from torch import nn

from unimiss_monai.networks.blocks.conv import ConvNormAct
from unimiss_monai.networks.blocks.memory_format import channels_last_weights
from unimiss_monai.networks.blocks.patch_embed import PatchExpand
from unimiss_monai.networks.blocks.pos_embed import PositionEmbedding
from unimiss_monai.networks.blocks.transformer_block import TransformerBlock
from unimiss_monai.networks.nets.encoder import MiTEncoder, init_weights, run_blocks

__all__ = ["MiTDecoder", "TailStage"]


class TailStage(nn.Module):
    """Transposed conv (kernel = stride) ``up``, add the stem skip, then an optional ``ConvNormAct`` ``refine``."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: Sequence[int], refine: bool):
        super().__init__()
        self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=stride, stride=stride)
        self.refine = ConvNormAct(spatial_dims, out_channels, out_channels, 3, 1, 1) if refine else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x) + skip
        return x if self.refine is None else self.refine(x)


class MiTDecoder(nn.Module):
    """Three transformer stages that upsample (transposed-conv patch expansion), add the encoder skip of the same
    scale, add position embeddings and run spatial-reduction blocks; a final LayerNorm; then (``with_tail``) conv
    stages back to the stem resolutions.

    The MiT decoder carries the encoder CLS token through linear projections (its normalised CLS is the UniMiSS
    pretraining feature); the MiT+ decoder has no CLS. Decoder blocks use ``qkv_bias=False`` and LayerNorm eps 1e-5,
    as in the official ``MiT.py`` / ``MiTplus.py``.

    Args:
        encoder: the :class:`MiTEncoder` it decodes (gives widths, strides, grids and dimensionalities).
        with_tail: build the conv tail (UniMiSS+ reconstruction and segmentation; UniMiSS segmentation).
        drop_rate: dropout after position embedding, attention projection and MLP.
        attn_drop_rate: attention-weight dropout.
        drop_path_rate: stochastic depth, increasing linearly over the blocks.
    """

    def __init__(
        self,
        encoder: MiTEncoder,
        with_tail: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        cfg = encoder.config
        self.config = cfg
        self.spatial_dims = encoder.spatial_dims
        self.use_cls = cfg.decoder_cls
        self.grad_checkpointing = False
        dims = cfg.decoder_dims
        prefix = 1 if self.use_cls else 0
        self.up_embeds = nn.ModuleList()
        self.pos_embeds = nn.ModuleList()
        prev = cfg.embed_dims[-1]
        for k, dim in enumerate(dims):
            self.up_embeds.append(
                nn.ModuleDict(
                    {f"{d}d": PatchExpand(d, prev, dim, cfg.up_strides(d)[k], cfg.extra_conv) for d in self.spatial_dims}
                )
            )
            self.pos_embeds.append(
                nn.ModuleDict(
                    {f"{d}d": PositionEmbedding(dim, encoder.stage_grid(d, 2 - k), prefix) for d in self.spatial_dims}
                )
            )
            prev = dim
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(cfg.decoder_depths)).tolist()
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                TransformerBlock(
                    dim, cfg.decoder_num_heads[k], self.spatial_dims, cfg.decoder_sr_ratios[k], cfg.depthwise_sr,
                    cfg.decoder_mlp_ratios[k], qkv_bias=False, norm_eps=1e-5, drop=drop_rate,
                    attn_drop=attn_drop_rate, drop_path=rates[sum(cfg.decoder_depths[:k]) + j],
                )
                for j in range(cfg.decoder_depths[k])
            )
            for k, dim in enumerate(dims)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-5)
        if self.use_cls:
            widths = (cfg.embed_dims[-1],) + dims
            self.cls_proj = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.tail = None
        if with_tail:
            self.tail = nn.ModuleDict({f"{d}d": self._make_tail(d) for d in self.spatial_dims})
        self.out_channels = list(dims) + (list(cfg.tail_channels) if with_tail else [])
        self.apply(init_weights)
        self.apply(channels_last_weights)

    def _make_tail(self, d: int) -> nn.ModuleList:
        cfg, prev, stages = self.config, self.config.decoder_dims[-1], nn.ModuleList()
        for j, ch in enumerate(self.config.tail_channels):
            stages.append(TailStage(d, prev, ch, cfg.tail_strides(d)[j], cfg.tail_refine[j]))
            prev = ch
        return stages

    def forward(
        self, features: list[torch.Tensor], cls: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Args:
            features: :meth:`MiTEncoder.forward_intermediates` features (stem outputs, then stages 1-4).
            cls: encoder CLS (B, C4); required by the MiT decoder, ignored by MiT+.

        Returns:
            ``(outputs, cls)``: decoder maps coarse to fine (three transformer stages, then the tail stages), and the
            normalised decoder CLS (B, decoder_dims[-1]) or ``None`` when the decoder has no CLS.
        """
        n_stem = len(self.config.stem_channels)
        stem, stages = features[:n_stem], features[n_stem:]
        x = stages[-1]
        key = f"{x.ndim - 2}d"
        b = x.shape[0]
        outputs: list[torch.Tensor] = []
        if self.use_cls and cls is None:
            raise ValueError("MiTDecoder: this decoder carries the CLS token; pass the encoder's cls")
        for k in range(3):
            x = self.up_embeds[k][key](x)
            grid = tuple(x.shape[2:])
            tokens = (x + stages[2 - k]).flatten(2).transpose(1, 2)
            prefix = 0
            if self.use_cls:
                cls = self.cls_proj[k](cls)
                tokens = torch.cat((cls.unsqueeze(1), tokens), dim=1)
                prefix = 1
            tokens = self.pos_drop(tokens + self.pos_embeds[k][key](grid).to(tokens.dtype))
            tokens = run_blocks(self.blocks[k], tokens, grid, self.grad_checkpointing and self.training)
            if k == 2:
                tokens = self.norm(tokens)
            if self.use_cls:
                cls = tokens[:, 0]
            x = tokens[:, prefix:].transpose(1, 2).reshape(b, -1, *grid)
            outputs.append(x)
        if self.tail is not None:
            for j, stage in enumerate(self.tail[key]):
                x = stage(x, stem[n_stem - 1 - j])
                outputs.append(x)
        return outputs, (cls if self.use_cls else None)

    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.startswith("pos_embeds.")}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
