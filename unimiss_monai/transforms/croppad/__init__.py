"""Random crops for self-supervised multi-view training."""

from unimiss_monai.transforms.croppad.array import RandResizedCrop, RandScaledCrop, pad_to_at_least
from unimiss_monai.transforms.croppad.dictionary import (
    RandResizedCropD,
    RandResizedCropd,
    RandResizedCropDict,
    RandScaledCropD,
    RandScaledCropd,
    RandScaledCropDict,
)

__all__ = [
    "RandResizedCrop",
    "RandResizedCropD",
    "RandResizedCropDict",
    "RandResizedCropd",
    "RandScaledCrop",
    "RandScaledCropD",
    "RandScaledCropDict",
    "RandScaledCropd",
    "pad_to_at_least",
]
