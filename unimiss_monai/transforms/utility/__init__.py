"""Utility transforms: input checks that fail one case with a one-line reason instead of producing garbage."""

from unimiss_monai.transforms.utility.array import CheckImage
from unimiss_monai.transforms.utility.dictionary import (
    CheckImaged,
    CheckImageD,
    CheckImageDict,
    CheckSpatialDimsd,
    CheckSpatialDimsD,
    CheckSpatialDimsDict,
)

__all__ = ["CheckImage", "CheckImageD", "CheckImageDict", "CheckImaged", "CheckSpatialDimsD", "CheckSpatialDimsDict",
           "CheckSpatialDimsd"]
