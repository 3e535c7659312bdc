"""The patch grid a checkpoint's position embedding was trained at, which its resize to the model's grid starts from.

A grid read wrongly scrambles the embedding without an error (its entries land on other patches), so a grid is only
ever taken from a record (the checkpoint's ``info``), from the variant's default training size, or from a uniform
rescale of the model's grid; anything else is refused by returning ``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from unimiss_monai.networks.blocks.pos_embed import PositionEmbedding
from unimiss_monai.networks.nets.encoder import MiTEncoder
from unimiss_monai.networks.variants import VARIANTS, stage_grids

__all__ = ["training_grid", "uniform_rescale"]

_POS_KEY = re.compile(r"(?:^|\.)(decoder\.)?pos_embeds\.(\d)\.([23])d\.weight$")


def uniform_rescale(n: int, grid: tuple[int, ...]) -> tuple[int, ...] | None:
    """The grid of ``n`` entries that is ``grid`` with every side scaled by one factor, or ``None`` when none is.

    Example: ``uniform_rescale(16 * 24 * 24, (8, 12, 12))`` is ``(16, 24, 24)``; ``uniform_rescale(16 * 24 * 24,
    (8, 24, 24))`` is ``None``, although ``(9, 32, 32)`` has the entries and nearly the aspect.
    """
    factor = (n / math.prod(grid)) ** (1 / len(grid))
    scaled = tuple(round(side * factor) for side in grid)
    exact = all(math.isclose(side * factor, s, rel_tol=1e-9, abs_tol=1e-9) for side, s in zip(grid, scaled))
    return scaled if exact and math.prod(scaled) == n else None


def training_grid(key: str, n: int, module: PositionEmbedding, encoder: MiTEncoder | None, info: Mapping) -> tuple | None:
    """Grid of a checkpoint position embedding with ``n`` patch entries, loaded into ``module`` (model key ``key``);
    ``None`` when it cannot be told."""
    m = _POS_KEY.search(key)
    if encoder is not None and m is not None:
        d = int(m.group(3))
        stage = 2 - int(m.group(2)) if m.group(1) else int(m.group(2))  # decoder stage k mirrors encoder stage 2 - k
        recorded = info.get(f"img_size{d}d")
        # without a record, weights most likely kept the variant's default training size (official 224 / 16x96x96)
        size = recorded if recorded is not None else VARIANTS.get(encoder.config.name, encoder.config).img_size(d)
        grid = stage_grids(encoder.config, d, size)[stage]
        if math.prod(grid) == n:
            return grid
        if recorded is not None:
            return None
    return uniform_rescale(n, tuple(module.grid))
