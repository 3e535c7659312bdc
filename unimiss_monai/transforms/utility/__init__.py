"""Utility transforms: input checks that fail one case with a one-line reason instead of producing garbage, and the
guard that skips the post-processing of such a case; the field-of-view check of a classifier's input."""

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
from unimiss_monai.transforms.utility.field_of_view import (
    CheckFieldOfView,
    CheckFieldOfViewd,
    CheckFieldOfViewD,
    CheckFieldOfViewDict,
    field_of_view_mm,
)

__all__ = ["CheckFieldOfView", "CheckFieldOfViewD", "CheckFieldOfViewDict", "CheckFieldOfViewd", "CheckImage",
           "CheckImageD", "CheckImageDict", "CheckImaged", "CheckSpatialDimsD", "CheckSpatialDimsDict",
           "CheckSpatialDimsd", "SkipFailedd", "field_of_view_mm"]
