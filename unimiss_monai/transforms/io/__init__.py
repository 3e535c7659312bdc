"""Transforms that read the files of a case (a CT series that keeps every slice's rescale) and write them from a
post-processing chain (its prediction, overlay pictures)."""

from unimiss_monai.transforms.io.array import LoadCTImage
from unimiss_monai.transforms.io.dictionary import (
    LoadCTImageD,
    LoadCTImaged,
    LoadCTImageDict,
    SaveCaseImageD,
    SaveCaseImaged,
    SaveCaseImageDict,
    SaveOverlayPNGD,
    SaveOverlayPNGd,
    SaveOverlayPNGDict,
)

__all__ = [
    "LoadCTImage", "LoadCTImageD", "LoadCTImageDict", "LoadCTImaged", "SaveCaseImageD", "SaveCaseImageDict",
    "SaveCaseImaged", "SaveOverlayPNGD", "SaveOverlayPNGDict", "SaveOverlayPNGd",
]
