"""Transforms that write files of a case (its prediction, overlay pictures) from a post-processing chain."""

from unimiss_monai.transforms.io.dictionary import (
    SaveCaseImageD,
    SaveCaseImaged,
    SaveCaseImageDict,
    SaveOverlayPNGD,
    SaveOverlayPNGd,
    SaveOverlayPNGDict,
)

__all__ = ["SaveCaseImageD", "SaveCaseImageDict", "SaveCaseImaged", "SaveOverlayPNGD", "SaveOverlayPNGDict", "SaveOverlayPNGd"]
