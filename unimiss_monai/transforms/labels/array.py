"""Label-map transforms on one channel-first array."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from monai.transforms import Transform

__all__ = ["SelectStructures"]


class SelectStructures(Transform):
    """Map a TotalSegmentator label map to compact classes: selected values to ``1..K``, every other value to 0.

    Args:
        table: TotalSegmentator value -> class (see :func:`~unimiss_monai.data.totalsegmentator.structure_lookup`).
        max_value: largest value a valid label map may hold (e.g. the last id of ``structures.csv``); a larger or
            negative value raises, since it means the map follows another labelling. ``None`` skips the check.

    Examples::

        from unimiss_monai.data.totalsegmentator import LUNG_LOBES, structure_lookup

        table, names = structure_lookup({"lung": LUNG_LOBES, "heart": ["heart"]})
        SelectStructures(table)(label)  # (1, X, Y, Z) with values in {0, 1, 2}
    """

    backend = [torch.Tensor.__name__, np.ndarray.__name__]

    def __init__(self, table: Mapping[int, int], max_value: int | None = None) -> None:
        if not table:
            raise ValueError("SelectStructures: empty table; build one with unimiss_monai.data.totalsegmentator.structure_lookup()")
        self.max_value = max_value
        size = max(max(table), max_value or 0) + 1
        self.lut = torch.zeros(size, dtype=torch.long)
        for src, dst in table.items():
            self.lut[int(src)] = int(dst)

    def __call__(self, label: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """label: (C, *spatial) integer-valued label map -> same shape, values in ``0..K``."""
        values = torch.as_tensor(label)
        idx = values.round().long()
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or (self.max_value is not None and high > self.max_value):
            raise ValueError(f"SelectStructures: label values span [{low}, {high}], outside 0..{self.max_value if self.max_value is not None else 'inf'} of the structures list; is this map labelled with another structures.csv?")
        # values past the table (other structures) are background
        mapped = torch.where(idx < len(self.lut), self.lut[idx.clamp(max=len(self.lut) - 1)], 0)
        if isinstance(label, np.ndarray):
            return mapped.numpy().astype(label.dtype)
        out = mapped.to(values.dtype)
        return label.clone().copy_(out) if hasattr(label, "meta") else out
