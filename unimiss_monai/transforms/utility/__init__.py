"""Utility transforms: input checks that fail one case with a one-line reason instead of producing garbage, and the
guard that skips the post-processing of such a case."""

from unimiss_monai.transforms.utility.array import CheckImage
from unimiss_monai.transforms.utility.dictionary import (
    CheckImaged,
    CheckImageD,
    CheckImageDict,
    CheckSpatialDimsd,
    CheckSpatialDimsD,
    CheckSpatialDimsDict,
    SkipFailedd,
)

__all__ = ["CheckImage", "CheckImageD", "CheckImageDict", "CheckImaged", "CheckSpatialDimsD", "CheckSpatialDimsDict",
           "CheckSpatialDimsd", "SkipFailedd"]
