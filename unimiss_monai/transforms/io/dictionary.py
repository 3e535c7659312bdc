"""Dictionary transforms that write pictures of a case during post-processing."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from unimiss_monai.data.xray import drop_trailing_singletons, source_name, write_overlay_png

__all__ = ["SaveOverlayPNGD", "SaveOverlayPNGDict", "SaveOverlayPNGd"]


class SaveOverlayPNGd(MapTransform):
    """Write ``<output_dir>/<input file stem>_overlay.png``: the image with its predicted masks (post-processing).

    Args:
        keys: the mask key (``(S, X, Y)``, binary).
        image_key: the image key (``(C, X, Y)``, same size as the masks).
        output_dir: folder of the PNGs (created).
        names: structure names for the legend, one per mask channel.
        alpha: mask opacity. Defaults to 0.4.
        allow_missing_keys: skip missing mask keys, and write nothing when ``image_key`` is missing (otherwise a
            missing key raises ``KeyError``).
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", output_dir: str | os.PathLike = ".", names: Sequence[str] = (), alpha: float = 0.4, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.output_dir = Path(output_dir)
        self.names = list(names)
        self.alpha = alpha

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.image_key not in d and self.allow_missing_keys:
            return d
        image = d[self.image_key]
        stem = Path(source_name(image)).name
        for suffix in (".nii.gz", ".nii", ".png", ".dcm", ".jpg", ".jpeg"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        for key in self.key_iterator(d):
            mask, img = drop_trailing_singletons(d[key]), drop_trailing_singletons(image)
            write_overlay_png(self.output_dir / f"{stem}_overlay.png", img, mask, self.names, self.alpha)
        return d


SaveOverlayPNGD = SaveOverlayPNGDict = SaveOverlayPNGd
