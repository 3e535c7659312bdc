"""A network that fails for some cases only: the stand-in of a forward pass that breaks on one input of a batch."""

from __future__ import annotations

import torch
from torch import nn


class FailsOnNegative(nn.Module):
    """Class scores (mean, -mean); raises a RuntimeError for any case whose mean is negative."""

    def forward(self, x):
        means = x.flatten(1).mean(1)
        if (means < 0).any():
            raise RuntimeError("negative input")
        return torch.stack([means, -means], 1)
