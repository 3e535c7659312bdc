"""Random crops and slice sampling for self-supervised multi-view training."""

from unimiss_monai.transforms.croppad.array import AxialSliceSampler, RandResizedCrop, RandScaledCrop, pad_to_at_least
from unimiss_monai.transforms.croppad.dictionary import (
    AxialSliceSamplerD,
    AxialSliceSamplerd,
    AxialSliceSamplerDict,
    RandResizedCropD,
    RandResizedCropd,
    RandResizedCropDict,
    RandScaledCropD,
    RandScaledCropd,
    RandScaledCropDict,
)

__all__ = [
    "AxialSliceSampler",
    "AxialSliceSamplerD",
    "AxialSliceSamplerDict",
    "AxialSliceSamplerd",
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
