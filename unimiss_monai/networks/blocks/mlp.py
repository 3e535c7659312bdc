"""Transformer feed-forward block."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Mlp"]


class Mlp(nn.Module):
    """``fc1 -> GELU -> dropout -> fc2 -> dropout`` on tokens (B, N, C).

    Args:
        dim: token width.
        hidden_dim: hidden width (``mlp_ratio * dim``).
        drop: dropout after the activation and after ``fc2``.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
