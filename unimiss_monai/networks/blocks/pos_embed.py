"""Learnable absolute position embeddings on a 2D/3D patch grid, resized to the input's grid when it differs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PositionEmbedding", "resize_pos_embed"]


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: Sequence[int], new_grid: Sequence[int], num_prefix: int = 0
) -> torch.Tensor:
    """Resize ``(1, P + prod(old_grid), C)`` to ``(1, P + prod(new_grid), C)``.

    The patch part is reshaped to its real 2D/3D grid (row-major, as conv features flatten) and resized with bicubic
    (2D) or trilinear (3D) interpolation; the ``P`` prefix (CLS) entries are kept. Identity when the grids are equal.
    """
    old_grid, new_grid = tuple(int(s) for s in old_grid), tuple(int(s) for s in new_grid)
    if old_grid == new_grid:
        return pos_embed
    if pos_embed.shape[1] != num_prefix + math.prod(old_grid):
        raise ValueError(
            f"position embedding has {pos_embed.shape[1]} entries, expected {num_prefix} + prod{old_grid}"
        )
    c = pos_embed.shape[-1]
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    patches = patches.transpose(1, 2).reshape(1, c, *old_grid).float()
    mode = "bicubic" if len(old_grid) == 2 else "trilinear"
    patches = F.interpolate(patches, size=new_grid, mode=mode, align_corners=False).to(pos_embed.dtype)
    return torch.cat((prefix, patches.flatten(2).transpose(1, 2)), dim=1)


class PositionEmbedding(nn.Module):
    """One learnable ``weight`` of shape ``(1, num_prefix + prod(grid), dim)`` (the official layout: CLS entry first,
    then the patch grid flattened row-major), trained at ``grid`` and resized for other grids.

    Args:
        dim: token width.
        grid: training patch grid, (H, W) or (D, H, W).
        num_prefix: leading non-patch entries (1 for a CLS token, else 0).
    """

    def __init__(self, dim: int, grid: Sequence[int], num_prefix: int = 1) -> None:
        super().__init__()
        self.grid = tuple(int(s) for s in grid)
        self.num_prefix = num_prefix
        self.weight = nn.Parameter(torch.zeros(1, num_prefix + math.prod(self.grid), dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, grid: Sequence[int]) -> torch.Tensor:
        """Embedding for patch grid ``grid``: (1, num_prefix + prod(grid), dim)."""
        return resize_pos_embed(self.weight, self.grid, grid, self.num_prefix)
