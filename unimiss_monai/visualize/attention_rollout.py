"""Attention rollout for the MiT / MiT+ encoders, 2D or 3D.

Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020): model the residual
connection by adding the identity to each block's head-averaged attention, renormalise the rows, and multiply these
matrices over the blocks, so that entry (i, j) says how much of input token j reaches output token i. The map of an
image is the row of the CLS token (or the mean row when there is no prefix token) over the patch tokens, on the last
stage's patch grid, upsampled to the input.

The fused (SDPA) forward never forms the attention matrix; :func:`capture_attention` recomputes it from each block's
q / k projections through forward pre-hooks that exist only inside the ``with`` block, so normal inference pays
nothing. Only the last encoder stage is rolled out by default: its ``sr_ratio`` is 1, so its attention is square over
the tokens, as the product needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from monai.networks import eval_mode
from torch import nn

__all__ = ["attention_rollout", "capture_attention", "last_stage_blocks", "rollout"]


def last_stage_blocks(model: nn.Module) -> Sequence[nn.Module]:
    """The transformer blocks of the last stage of a UniMiSS encoder (``model.encoder.blocks[-1]``, or
    ``model.blocks[-1]`` for a bare :class:`~unimiss_monai.networks.MiTEncoder`)."""
    encoder = getattr(model, "encoder", model)
    stages = getattr(encoder, "blocks", None)
    if stages is None:
        raise ValueError(f"attention_rollout: {type(model).__name__} has no encoder.blocks; pass blocks= explicitly")
    return list(stages[-1])


@contextmanager
def capture_attention(blocks: Sequence[nn.Module]) -> Iterator[list[tuple[torch.Tensor, tuple[int, ...]]]]:
    """Record the attention probabilities of ``blocks`` during the forward passes run inside the ``with`` block.

    Args:
        blocks: transformer blocks whose ``attn`` has ``attention_weights(x, grid)``
            (:class:`~unimiss_monai.networks.blocks.SpatialReductionAttention`).

    Yields:
        A list that receives one ``(weights, grid)`` per block call, in call order: weights (B, heads, N, M) and
        the patch grid of that call.
    """
    records: list[tuple[torch.Tensor, tuple[int, ...]]] = []

    def record(module: nn.Module, args: tuple) -> None:
        x, grid = args[0], tuple(int(g) for g in args[1])
        with torch.no_grad():
            records.append((module.attention_weights(x, grid).detach(), grid))

    handles = []
    try:
        for blk in blocks:
            attn = getattr(blk, "attn", None)
            if attn is None or not hasattr(attn, "attention_weights"):
                raise ValueError(f"capture_attention: {type(blk).__name__} has no attn.attention_weights(x, grid)")
            handles.append(attn.register_forward_pre_hook(record))
        yield records
    finally:
        for h in handles:
            h.remove()


def rollout(attentions: Sequence[torch.Tensor], num_prefix_tokens: int = 1, head_fusion: str = "mean") -> torch.Tensor:
    """Roll attention out over consecutive blocks.

    Args:
        attentions: per block, first block first, (B, heads, N, N) or head-fused (B, N, N) attention probabilities.
        num_prefix_tokens: leading non-patch (CLS) tokens. With at least one, the map is the first token's row;
            with none, the mean row.
        head_fusion: ``"mean"`` (Abnar & Zuidema), ``"max"`` or ``"min"`` over heads.

    Returns:
        (B, N - num_prefix_tokens): how much each patch token contributes to the read-out token, unnormalised (the
        full row, prefix included, sums to 1).
    """
    if not attentions:
        raise ValueError("rollout: no attention matrices (no blocks ran inside capture_attention?)")
    fuse = {"mean": lambda a: a.mean(1), "max": lambda a: a.amax(1), "min": lambda a: a.amin(1)}
    if head_fusion not in fuse:
        raise ValueError(f"rollout: head_fusion must be one of {sorted(fuse)}, got {head_fusion!r}")
    result = None
    for a in attentions:
        a = fuse[head_fusion](a.float()) if a.ndim == 4 else a.float()
        if a.shape[-1] != a.shape[-2]:
            raise ValueError(
                f"rollout: attention {tuple(a.shape)} is not square; roll out only blocks with sr_ratio 1 (the last stage)"
            )
        # the residual path carries each token through unchanged: add the identity, renormalise the rows
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    assert result is not None
    read_out = result[:, 0] if num_prefix_tokens > 0 else result.mean(1)
    return read_out[:, num_prefix_tokens:]


def attention_rollout(
    model: nn.Module, x: torch.Tensor, blocks: Sequence[nn.Module] | None = None, head_fusion: str = "mean",
) -> torch.Tensor:
    """Attention-rollout maps at the input's resolution.

    Args:
        model: a UniMiSS classifier or encoder (anything whose forward runs ``blocks``).
        x: input (B, C_in, H, W) or (B, C_in, D, H, W).
        blocks: the blocks to roll out, all with square attention. Defaults to :func:`last_stage_blocks`.
        head_fusion: see :func:`rollout`.

    Returns:
        (B, *spatial) float maps in [0, 1], scaled by each map's maximum (a uniform map is all ones).
    """
    blocks = last_stage_blocks(model) if blocks is None else list(blocks)
    with eval_mode(model), capture_attention(blocks) as records:
        model(x.float())
    if len(records) != len(blocks):
        raise ValueError(f"attention_rollout: {len(blocks)} blocks but {len(records)} attention calls recorded")
    grid = records[-1][1]
    num_prefix = records[-1][0].shape[-2] - math.prod(grid)
    if num_prefix < 0:
        raise ValueError(f"attention_rollout: {records[-1][0].shape[-2]} tokens do not cover the patch grid {grid}")
    patch_map = rollout([w for w, _ in records], num_prefix, head_fusion)
    spatial = tuple(x.shape[2:])
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    maps = patch_map.reshape(x.shape[0], 1, *grid)
    maps = nn.functional.interpolate(maps, size=spatial, mode=mode, align_corners=False)[:, 0]
    peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * len(spatial)))
    return (maps / peak).clamp(0, 1)
