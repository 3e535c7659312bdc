"""Spatial-reduction attention (PVT style) whose key/value reduction conv is switched between 2D and 3D.

The queries are all tokens; keys and values come from the patch tokens reduced by a strided convolution of kernel and
stride ``sr_ratio`` (dense in UniMiSS, depthwise in UniMiSS+), with any prefix (CLS) token passed through unreduced.
On a CPU the fused forward computes that convolution as a product over the non-overlapping patches of the token
grid (:func:`patch_reduce`) where that was measured faster at no cost in memory: the same function, and a training
step 1.02-1.05x faster in float32 (depthwise) and 1.09-1.29x under bfloat16 autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers import Conv
from torch import nn

__all__ = ["SpatialReductionAttention", "patch_reduce"]


def patch_reduce(tokens: torch.Tensor, grid: Sequence[int], conv: nn.Module) -> torch.Tensor:
    """``conv`` (kernel == stride, no padding, dense or depthwise) applied to patch tokens, computed per patch.

    A convolution whose kernel equals its stride sees each patch once: dense, it is one matrix product of the
    flattened patches (a linear layer); depthwise, a weighted sum within each patch and channel. Taken on the tokens
    as they lie (channels last), that skips the transposes to and from the channels-first layout, and PyTorch's CPU
    depthwise 3D convolution (a slow path, 7-13x slower than this under bfloat16 autocast at MiT+ shapes). Voxels past
    the last whole patch are dropped, as the strided convolution drops them.

    Args:
        tokens: (B, prod(grid), C) patch tokens, row-major over ``grid``.
        grid: the token grid, (H, W) or (D, H, W).
        conv: the ``Conv2d``/``Conv3d`` it replaces (its weight and bias are used), ``groups`` 1 or ``C``.

    Returns:
        (B, prod(grid // r), out_channels) with ``r`` the conv's stride, in the conv's output order.
    """
    b, _, c = tokens.shape
    r, nd = conv.stride[0], len(grid)
    out = [g // r for g in grid]
    x = tokens.reshape(b, *grid, c)[(slice(None), *[slice(0, o * r) for o in out])]
    # (B, o1, r, o2, r, ..., C) -> (B, o1, o2, ..., r, r, ..., C): patch index first, position in the patch next
    x = x.reshape(b, *[v for o in out for v in (o, r)], c)
    x = x.permute(0, *range(1, 2 * nd, 2), *range(2, 2 * nd + 1, 2), 2 * nd + 1)
    x = x.reshape(b, math.prod(out), r**nd, c)
    w = conv.weight  # (O, C / groups, r, ...)
    if conv.groups == 1:
        w = w.permute(0, *range(2, 2 + nd), 1).reshape(w.shape[0], r**nd * c)  # same (position, channel) order as x
        return F.linear(x.reshape(b, math.prod(out), r**nd * c), w, conv.bias)
    if conv.groups != c or w.shape[0] != c:
        raise ValueError(f"patch_reduce: groups must be 1 or the {c} channels, got {conv.groups} -> {w.shape[0]}")
    # an elementwise product and sum (not einsum): under CPU autocast it stays in float32 and was the faster of the two
    out_tokens = (x * w.reshape(c, r**nd).t()).sum(2)
    return out_tokens + conv.bias if conv.bias is not None else out_tokens


class SpatialReductionAttention(nn.Module):
    """Multi-head attention over ``N = P + prod(grid)`` tokens with spatially reduced keys/values.

    Parameter names (``q``, ``kv``, ``proj``, ``norm``) follow the official ``Attention`` (UniMiSS
    ``models/MiT_encoder.py``); its ``sr2D``/``sr3D`` convs are ``sr["2d"]``/``sr["3d"]`` here.

    Args:
        dim: token width C.
        num_heads: heads; ``dim`` must be divisible by it.
        spatial_dims: which reduction convs to build, e.g. ``(2, 3)`` or ``(3,)``.
        sr_ratio: reduction factor (kernel and stride); 1 disables the reduction.
        depthwise_sr: depthwise (UniMiSS+) instead of dense (UniMiSS) reduction conv.
        qkv_bias: bias on the q and kv projections.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after the output projection.

    Attributes:
        fused: ``True`` uses ``torch.nn.functional.scaled_dot_product_attention``, except under CPU autocast, and
            on a CPU reduces keys and values with :func:`patch_reduce` (see :meth:`reduce`); ``False`` always the explicit
            ``softmax(q k^T * scale) v`` and the strided convolution of the official code (kept as a reference
            for tests and benchmarks). Under CPU autocast (bfloat16) the explicit product is used because it is the
            faster of the two there: SDPA's CPU kernels run these short, spatially reduced key sequences in
            bfloat16 1.4-3x slower than two bfloat16 matrix products (forward and backward, MiT stage shapes),
            while in float32 SDPA is as fast or faster. Both compute the same function.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        spatial_dims: Sequence[int] = (2, 3),
        sr_ratio: int = 1,
        depthwise_sr: bool = False,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"attention: dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.sr_ratio = sr_ratio
        self.attn_drop = attn_drop
        self.fused = True
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            groups = dim if depthwise_sr else 1
            self.sr = nn.ModuleDict(
                {
                    f"{d}d": Conv[Conv.CONV, d](dim, dim, kernel_size=sr_ratio, stride=sr_ratio, groups=groups)
                    for d in spatial_dims
                }
            )
            # the official reduction norm is a plain nn.LayerNorm (eps 1e-5), unlike the blocks' norms
            self.norm = nn.LayerNorm(dim)

    def reduce(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """Tokens (B, P + prod(grid), C) -> reduced key/value tokens (B, P + prod(grid // sr), C), normalised."""
        if self.sr_ratio == 1:
            return x
        b, n, c = x.shape
        prefix = n - math.prod(grid)
        conv = self.sr[f"{len(grid)}d"]
        # per patch on a CPU: always for depthwise (torch's depthwise 3D conv is a slow path there), dense only under
        # autocast (in float32 the dense conv is as fast and keeps 2-7 % less memory per step)
        if self.fused and x.device.type == "cpu" and (conv.groups > 1 or torch.is_autocast_enabled("cpu")):
            patches = patch_reduce(x[:, prefix:], grid, conv)
        else:  # the official formulation: the strided convolution on the channels-first grid
            patches = conv(x[:, prefix:].transpose(1, 2).reshape(b, c, *grid)).flatten(2).transpose(1, 2)
        return self.norm(torch.cat((x[:, :prefix], patches), dim=1))

    def _project(self, x: torch.Tensor, grid: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head queries (B, h, N, C/h) and (reduced) keys and values (B, h, M, C/h)."""
        b, n, c = x.shape
        h = self.num_heads
        q = self.q(x).reshape(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(self.reduce(x, grid)).reshape(b, -1, 2, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def _weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)

    def attention_weights(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """The attention probabilities ``softmax(q k^T * scale)`` that :meth:`forward` applies to ``x``, without dropout.

        The fused forward never materialises them; this recomputes them from the same projections, for inspection
        (attention rollout) only.

        Args:
            x: tokens (B, N, C), as given to :meth:`forward`. grid: the patch grid, as given to :meth:`forward`.

        Returns:
            (B, num_heads, N, M) with M the number of (reduced) key tokens; each row sums to 1.
        """
        q, k, _ = self._project(x, grid)
        return self._weights(q, k)

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """Args:
            x: tokens (B, N, C), the first ``N - prod(grid)`` being prefix (CLS) tokens.
            grid: spatial shape of the patch tokens, (H, W) or (D, H, W).

        Returns:
            (B, N, C).
        """
        b, n, c = x.shape
        q, k, v = self._project(x, grid)
        drop = self.attn_drop if self.training else 0.0
        if self.fused and not (q.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        else:
            out = F.dropout(self._weights(q, k), drop, self.training) @ v
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))
