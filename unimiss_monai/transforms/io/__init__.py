"""Transforms that write files of a case (overlay pictures) from a post-processing chain."""

from unimiss_monai.transforms.io.dictionary import SaveOverlayPNGD, SaveOverlayPNGd, SaveOverlayPNGDict

__all__ = ["SaveOverlayPNGD", "SaveOverlayPNGDict", "SaveOverlayPNGd"]
