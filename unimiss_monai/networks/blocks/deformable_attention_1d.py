"""Deformable multi-head attention along a 1-D sequence (the slices of a volume).

- [0]: Nguyen et al., "Joint Self-Supervised Image-Volume Representation Learning with Intra-Inter Contrastive
  Clustering", AAAI 2023, https://arxiv.org/abs/2212.01893 (deformable attention between slice embeddings)
- [1]: Zhu et al., "Deformable DETR", ICLR 2021 (a few learned sampling points around each query)
- [2]: Xia et al., "Vision Transformer with Deformable Attention", CVPR 2022 (keys/values sampled at deformed
  points, continuous relative position bias)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DeformableAttention1d", "padding_lengths"]


def padding_lengths(key_padding_mask: Tensor | None, batch: int, length: int, device: torch.device) -> Tensor:
    """Number of real tokens of every sequence, ``(B,)`` long, after checking ``key_padding_mask``.

    Args:
        key_padding_mask: ``(B, L)`` bool, True at padded positions, or None (no padding). Padding must be trailing
            (real slices first), which is how :func:`~unimiss_monai.networks.nets.image_volume.pad_slice_sequences`
            builds it.
    """
    if key_padding_mask is None:
        return torch.full((batch,), length, dtype=torch.long, device=device)
    if key_padding_mask.shape != (batch, length) or key_padding_mask.dtype != torch.bool:
        raise ValueError(
            f"key_padding_mask must be a bool tensor of shape ({batch}, {length}) with True at padding, got "
            f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}."
        )
    lengths = (~key_padding_mask).sum(dim=1)
    if bool((lengths == 0).any()):
        raise ValueError(
            f"key_padding_mask masks every position of sequence(s) {(lengths == 0).nonzero().flatten().tolist()}; "
            "each volume needs at least one real slice (drop empty volumes before batching)."
        )
    trailing = torch.arange(length, device=key_padding_mask.device)[None] >= lengths[:, None]
    if not torch.equal(trailing, key_padding_mask):
        raise ValueError(
            "key_padding_mask must pad at the end only (real slices first, then padding); reorder the slices."
        )
    return lengths.to(device)


def _interpolate(seq: Tensor, pos: Tensor) -> Tensor:
    """Linear interpolation of ``seq`` ``(B, H, L, D)`` at fractional positions ``pos`` ``(B, H, L, P)`` in
    ``[0, L - 1]`` -> ``(B, H, L, P, D)``."""
    b, h, length, d = seq.shape
    p = pos.shape[-1]
    lo = pos.detach().floor().clamp(0, length - 1)
    frac = (pos - lo).unsqueeze(-1)
    lo = lo.long()
    hi = (lo + 1).clamp(max=length - 1)

    def gather(idx: Tensor) -> Tensor:
        return seq.gather(2, idx.reshape(b, h, -1, 1).expand(-1, -1, -1, d)).reshape(b, h, length, p, d)

    return gather(lo) * (1 - frac) + gather(hi) * frac


class DeformableAttention1d(nn.Module):
    """Each query attends to ``num_points`` keys sampled around its own position, at learned offsets.

    For query ``i`` and head ``h`` the sampling positions are ``p = i + base_k + offset_k(x_i)``, where
    ``base_k = k - num_points // 2`` is a fixed integer grid around the query and
    ``offset_k = offset_range * tanh(W x_i)`` a learned shift (zero at initialisation, so training starts from
    local windowed attention). Keys and values are linearly interpolated at ``p`` (positions are clamped to the
    real tokens of the sequence, so padding is never read), and the weights are
    ``softmax_k(q_i . k(p) / sqrt(d) + bias_h(p - i))`` with a learned relative position bias, itself linearly
    interpolated from a table over the displacements ``[-R, R]``, ``R = num_points // 2 + ceil(offset_range)``.

    Args:
        dim: token width ``C``.
        num_heads: attention heads (``dim`` must be divisible by it). Defaults to 8.
        num_points: sampling points per query and head. Defaults to 4.
        offset_range: largest learned shift, in tokens. Defaults to 2.0.
        qkv_bias: bias on the query/key/value projections. Defaults to True.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after the output projection.

    Examples::

        >>> attn = DeformableAttention1d(64, num_heads=4, num_points=4)
        >>> out = attn(torch.randn(2, 12, 64))                          # (2, 12, 64)
    """

    base: Tensor

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_points: int = 4,
        offset_range: float = 2.0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"DeformableAttention1d: dim {dim} must be divisible by num_heads {num_heads}.")
        if num_points < 1 or offset_range < 0:
            raise ValueError(
                f"DeformableAttention1d: need num_points >= 1 and offset_range >= 0, got {num_points}, {offset_range}."
            )
        self.num_heads = num_heads
        self.num_points = num_points
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.offset_range = float(offset_range)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.offset = nn.Linear(dim, num_heads * num_points)
        self.max_relative = num_points // 2 + math.ceil(offset_range)
        self.relative_bias = nn.Parameter(torch.zeros(num_heads, 2 * self.max_relative + 1))
        self.register_buffer("base", torch.arange(num_points, dtype=torch.float32) - num_points // 2, persistent=False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        for m in (self.q, self.kv, self.proj):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        nn.init.trunc_normal_(self.relative_bias, std=0.02)

    def sampling_positions(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Sampling positions ``(B, H, L, P)`` (fractional token indices) for tokens ``x`` ``(B, L, C)`` whose real
        lengths are ``lengths`` ``(B,)``."""
        b, length, _ = x.shape
        # positions in float32 even under autocast: in bfloat16 a position near slice 31 is rounded to a quarter slice
        offsets = self.offset_range * torch.tanh(self.offset(x).float())  # (B, L, H*P)
        offsets = offsets.view(b, length, self.num_heads, self.num_points).permute(0, 2, 1, 3)
        query = torch.arange(length, device=x.device, dtype=offsets.dtype).view(1, 1, length, 1)
        pos = query + self.base.to(offsets.dtype) + offsets
        last = (lengths - 1).to(offsets.dtype).view(b, 1, 1, 1)
        return torch.minimum(pos.clamp_min(0), last)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """
        Args:
            x: tokens ``(B, L, C)``, one per slice in slice order.
            key_padding_mask: ``(B, L)`` bool, True at trailing padded positions (see :func:`padding_lengths`).
                Padded tokens are never sampled and their outputs are zero.

        Returns:
            ``(B, L, C)``.
        """
        if x.ndim != 3:
            raise ValueError(f"DeformableAttention1d: expected tokens (B, L, C), got {tuple(x.shape)}.")
        b, length, c = x.shape
        lengths = padding_lengths(key_padding_mask, b, length, x.device)
        h, d = self.num_heads, self.head_dim
        q = self.q(x).view(b, length, h, d).transpose(1, 2)  # (B, H, L, d)
        k, v = self.kv(x).view(b, length, 2, h, d).permute(2, 0, 3, 1, 4)  # 2 x (B, H, L, d)
        if key_padding_mask is not None:
            # interpolation at the last real token touches its padded neighbour with weight 0: keep it finite
            keep = (~key_padding_mask).view(b, 1, length, 1).to(k.dtype)
            k, v = k * keep, v * keep
        pos = self.sampling_positions(x, lengths)  # (B, H, L, P)
        k_s, v_s = _interpolate(k, pos), _interpolate(v, pos)  # (B, H, L, P, d)
        logits = (q.unsqueeze(3) * k_s).sum(-1) * self.scale  # (B, H, L, P)
        query = torch.arange(length, device=x.device, dtype=pos.dtype).view(1, 1, length, 1)
        rel = (pos - query).clamp(-self.max_relative, self.max_relative) + self.max_relative
        logits = logits + self._relative_bias(rel)
        attn = self.attn_drop(F.softmax(logits.float(), dim=-1).to(v_s.dtype))
        out = (attn.unsqueeze(-1) * v_s).sum(3).transpose(1, 2).reshape(b, length, c)
        out = self.proj_drop(self.proj(out))
        if key_padding_mask is not None:
            out = out.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
        return out

    def _relative_bias(self, rel: Tensor) -> Tensor:
        """Bias ``(B, H, L, P)`` at fractional table indices ``rel`` ``(B, H, L, P)`` in ``[0, 2R]``."""
        table = self.relative_bias  # (H, 2R + 1)
        lo = rel.detach().floor().clamp(0, table.shape[1] - 1)
        frac = rel - lo
        lo = lo.long()
        hi = (lo + 1).clamp(max=table.shape[1] - 1)
        heads = torch.arange(self.num_heads, device=rel.device).view(1, -1, 1, 1)
        return table[heads, lo] * (1 - frac) + table[heads, hi] * frac
