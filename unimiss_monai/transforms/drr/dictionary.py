"""Dictionary wrappers of the DRR transforms (``DRRProjectd``, ``RandDRRProjectd``)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple

from unimiss_monai.transforms.drr.array import DRRProject, RandDRRProject

__all__ = ["DRRProjectd", "DRRProjectD", "DRRProjectDict", "RandDRRProjectd", "RandDRRProjectD", "RandDRRProjectDict"]


class DRRProjectd(MapTransform):
    """Dictionary twin of :class:`DRRProject`: replaces each CT under ``keys`` with its DRR (or writes it to the
    matching ``output_keys`` entry when given, keeping the CT)."""

    backend = DRRProject.backend

    def __init__(self, keys: KeysCollection, output_keys: KeysCollection | None = None, allow_missing_keys: bool = False,
                 **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.output_keys = list(ensure_tuple(output_keys)) if output_keys is not None else None
        if self.output_keys is not None and len(self.output_keys) != len(self.keys):
            raise ValueError(f"output_keys {self.output_keys} must match keys {list(self.keys)} one to one")
        self.projector = self._make(**kwargs)

    def _make(self, **kwargs):
        return DRRProject(**kwargs)

    def _out(self, key: Hashable) -> Hashable:
        return key if self.output_keys is None else self.output_keys[list(self.keys).index(key)]

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self._out(key)] = self.projector(d[key])
        return d


class RandDRRProjectd(Randomizable, DRRProjectd):
    """Dictionary twin of :class:`RandDRRProject`: one random pose per call, shared by every key (so a CT and its
    registered companions stay aligned)."""

    def _make(self, **kwargs):
        return RandDRRProject(**kwargs)

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        self.projector.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        self.projector.randomize()

    def __call__(self, data: Mapping) -> dict:
        self.randomize()
        d = dict(data)
        for key in self.key_iterator(d):
            d[self._out(key)] = self.projector(d[key], randomize=False)
        return d


DRRProjectD = DRRProjectDict = DRRProjectd
RandDRRProjectD = RandDRRProjectDict = RandDRRProjectd
