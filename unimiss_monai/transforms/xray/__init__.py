"""Transforms of 2D radiographs: one grey channel, and masks checked against their image."""

from unimiss_monai.transforms.xray.array import AsGreyRadiograph
from unimiss_monai.transforms.xray.dictionary import (
    AsGreyRadiographD,
    AsGreyRadiographd,
    AsGreyRadiographDict,
    CheckMultiLabelMaskD,
    CheckMultiLabelMaskd,
    CheckMultiLabelMaskDict,
)

__all__ = [
    "AsGreyRadiograph",
    "AsGreyRadiographD",
    "AsGreyRadiographDict",
    "AsGreyRadiographd",
    "CheckMultiLabelMaskD",
    "CheckMultiLabelMaskDict",
    "CheckMultiLabelMaskd",
]
