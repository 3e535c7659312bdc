"""Joint image-volume network: a 2D slice encoder plus an inter-slice deformable transformer.

- [0]: Nguyen et al., "Joint Self-Supervised Image-Volume Representation Learning with Intra-Inter Contrastive
  Clustering", AAAI 2023, https://arxiv.org/abs/2212.01893
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from unimiss_monai.networks.blocks.deformable_attention_1d import padding_lengths
from unimiss_monai.networks.nets.inter_slice_transformer import InterSliceTransformer
from unimiss_monai.networks.nets.slice_encoder import SliceEncoder

__all__ = ["ImageVolumeNet", "pad_slice_sequences"]


def pad_slice_sequences(
    volumes: Sequence[torch.Tensor], sequence_length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack volumes with different slice counts into one batch plus a key-padding mask.

    Args:
        volumes: ``B`` tensors ``(C, Z_b, X, Y)`` in network order (``CT_TO_NETWORK``: slices along ``Z``), same
            ``C``, ``X``, ``Y``.
        sequence_length: pad every volume to this many slices ``L``. Defaults to the largest ``Z_b``.

    Returns:
        ``(batch, key_padding_mask)``: ``(B, C, L, X, Y)`` with zeros after each volume's slices, and ``(B, L)`` bool,
        True at the padded (trailing) slice positions.
    """
    if len(volumes) == 0:
        raise ValueError("pad_slice_sequences: no volumes given.")
    shapes = [tuple(v.shape) for v in volumes]
    if any(len(s) != 4 for s in shapes) or len({(s[0],) + s[2:] for s in shapes}) != 1:
        raise ValueError(f"pad_slice_sequences: volumes must be (C, Z, X, Y) with one C, X, Y; got shapes {shapes}.")
    counts = [s[1] for s in shapes]
    if min(counts) < 1:
        raise ValueError(f"pad_slice_sequences: a volume has no slice (slice counts {counts}); drop it.")
    length = max(counts) if sequence_length is None else int(sequence_length)
    if max(counts) > length:
        raise ValueError(
            f"pad_slice_sequences: a volume has {max(counts)} slices, more than sequence_length={length}; crop along Z "
            "first (e.g. monai.transforms.RandSpatialCrop) or raise sequence_length."
        )
    c, _, x, y = shapes[0]
    batch = volumes[0].new_zeros((len(volumes), c, length, x, y))
    mask = torch.ones(len(volumes), length, dtype=torch.bool, device=volumes[0].device)
    for i, v in enumerate(volumes):
        batch[i, :, : v.shape[1]] = v
        mask[i, : v.shape[1]] = False
    return batch, mask


class ImageVolumeNet(nn.Module):
    """Intra-inter network of [0]: 2D images and volume slices share one :class:`SliceEncoder`; the slice embeddings
    of a volume go through an :class:`InterSliceTransformer` to give a volume embedding, and a linear predictor
    reconstructs the embeddings of masked slices.

    Volumes are ``(B, C, Z, X, Y)`` (``CT_TO_NETWORK``), slices along ``Z``. Volumes with fewer slices than the batch's
    sequence length are padded at the end and marked in ``key_padding_mask`` (True = padding; build both with
    :func:`pad_slice_sequences`, or pass a list of volumes); padded slices never go through the 2D encoder. A
    sequence with no real slice is refused with a ``ValueError``.

    Args:
        backbone: 2D backbone of the slice encoder (``"resnet50"``, other MONAI ResNets, ``"mit_tiny"``,
            ``"mit_small"``, ``"mitplus"``). Defaults to ``"resnet50"``.
        in_channels: image channels. Defaults to 1.
        d_model: embedding width. Defaults to 256.
        depth, num_heads, num_points, offset_range, mlp_ratio, drop_path_rate: see :class:`InterSliceTransformer`.
        num_scales: pooled feature maps of the slice encoder. Defaults to 4.
        sequence_length: slices ``L`` that a list of volumes is padded to. Defaults to the longest volume.
        backbone_kwargs: extra backbone arguments (see :class:`SliceEncoder`).

    Examples::

        >>> net = ImageVolumeNet("resnet18", d_model=64, num_heads=4)
        >>> out = net(torch.randn(2, 1, 12, 64, 64))
        >>> out["volume"].shape, out["slice_embeddings"].shape
        (torch.Size([2, 64]), torch.Size([2, 12, 64]))
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 1,
        d_model: int = 256,
        depth: int = 2,
        num_heads: int = 8,
        num_points: int = 4,
        offset_range: float = 2.0,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        num_scales: int = 4,
        sequence_length: int | None = None,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.slice_encoder = SliceEncoder(backbone, in_channels, d_model, num_scales, backbone_kwargs)
        self.inter = InterSliceTransformer(
            d_model, depth, num_heads, num_points, offset_range, mlp_ratio, drop_path_rate=drop_path_rate
        )
        self.predictor = nn.Linear(d_model, d_model)
        nn.init.trunc_normal_(self.predictor.weight, std=0.02)
        nn.init.zeros_(self.predictor.bias)
        self.d_model = d_model
        self.sequence_length = sequence_length
        #: the constructor arguments, recorded in the export so a loader rebuilds this network without guessing
        self.config: dict[str, Any] = {
            "backbone": backbone, "in_channels": in_channels, "d_model": d_model, "depth": depth,
            "num_heads": num_heads, "num_points": num_points, "offset_range": float(offset_range),
            "mlp_ratio": float(mlp_ratio), "num_scales": num_scales, "sequence_length": sequence_length,
            "backbone_kwargs": dict(backbone_kwargs or {}),
        }

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Intra embeddings ``(N, d_model)`` of 2D images or single slices ``(N, C, X, Y)``."""
        return self.slice_encoder(images)

    def encode_slices(
        self, volume: torch.Tensor | Sequence[torch.Tensor], key_padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Slice embeddings of a batch of volumes.

        Args:
            volume: ``(B, C, Z, X, Y)`` or a list of ``(C, Z_b, X, Y)`` (padded here with :func:`pad_slice_sequences`).
            key_padding_mask: ``(B, Z)`` bool, True at trailing padded slices (tensor input only).

        Returns:
            ``(embeddings, key_padding_mask)``: ``(B, L, d_model)`` (zero at padding) and the ``(B, L)`` mask.
        """
        if not isinstance(volume, torch.Tensor):
            if key_padding_mask is not None:
                raise ValueError(
                    "ImageVolumeNet: pass key_padding_mask with a padded tensor, not with a list of volumes."
                )
            volume, key_padding_mask = pad_slice_sequences(volume, self.sequence_length)
        if volume.ndim != 5:
            raise ValueError(
                f"ImageVolumeNet: expected volumes (B, C, Z, X, Y) in network order (CT_TO_NETWORK), got "
                f"{tuple(volume.shape)}; 2D images go through encode_images."
            )
        b, c, length = volume.shape[:3]
        lengths = padding_lengths(key_padding_mask, b, length, volume.device)
        real = torch.arange(length, device=volume.device)[None] < lengths[:, None]  # (B, L)
        slices = volume.transpose(1, 2)[real]  # (M, C, X, Y): only the real slices see the 2D encoder
        emb = self.slice_encoder(slices)
        out = emb.new_zeros((b, length, emb.shape[-1]))
        out[real] = emb
        mask = key_padding_mask if key_padding_mask is not None else ~real
        return out, mask

    def forward(
        self,
        volume: torch.Tensor | Sequence[torch.Tensor],
        key_padding_mask: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            volume: ``(B, C, Z, X, Y)`` or a list of ``(C, Z_b, X, Y)``.
            key_padding_mask: ``(B, Z)`` bool, True at trailing padded slices (tensor input only).
            token_mask: ``(B, L)`` bool, slices replaced by the mask token (e.g.
                :func:`~unimiss_monai.losses.masked_embedding.random_token_mask`).

        Returns:
            ``slice_embeddings`` ``(B, L, d)`` (the 2D encoder's, targets of the masked prediction), ``tokens``
            ``(B, L, d)`` (inter-slice outputs), ``predicted`` ``(B, L, d)`` (predicted slice embeddings),
            ``volume`` ``(B, d)`` (volume embedding, also under ``embedding``) and ``key_padding_mask`` ``(B, L)``.
        """
        emb, mask = self.encode_slices(volume, key_padding_mask)
        tokens, vol = self.inter(emb, mask, token_mask)
        return {
            "slice_embeddings": emb,
            "tokens": tokens,
            "predicted": self.predictor(tokens),
            "volume": vol,
            # the volume embedding under the name the package's backbone consumers read (k-NN probe)
            "embedding": vol,
            "key_padding_mask": mask,
        }

    def export(self) -> dict[str, Any]:
        """``{"model": state dict, "info": backbone_info(self)}``: the pretraining export (``recipe`` ``"intra_inter"``,
        the constructor arguments and, for the MiT 2D branch, the MiT variant fields the fine-tuning loader checks).
        The clustering heads and the losses' state (prototypes, queues, memory banks) belong to the training
        checkpoint only."""
        from unimiss_monai.networks.pretrained import backbone_info

        return {"model": self.state_dict(), "info": backbone_info(self)}

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay."""
        return {f"slice_encoder.{n}" for n in self.slice_encoder.no_weight_decay()} | {
            "inter.mask_token",
            *(f"inter.layers.{i}.attn.relative_bias" for i in range(len(self.inter.layers))),
        }
