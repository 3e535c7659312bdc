"""Radiograph transforms on one channel-first array."""

from __future__ import annotations

import torch
from monai.transforms import Transform

from unimiss_monai.data.xray import BT601, grey_radiograph
from unimiss_monai.transforms.utility.array import CheckImage

__all__ = ["AsGreyRadiograph"]


class AsGreyRadiograph(Transform):
    """Bring a loaded, channel-first radiograph to one grey channel and two spatial dims: ``(1, X, Y)``.

    - trailing singleton spatial dims (a DICOM frame ``(C, X, Y, 1)``, a NIfTI ``(X, Y, 1)``) are dropped, from the
      metadata's ``spatial_shape`` too;
    - a real 3D volume (more than two spatial dims longer than 1) is refused: this handles projection images only;
    - RGB/RGBA images whose colour channels are equal (a grey PNG saved as colour) keep one channel; with
      ``luminance=True`` other RGB/RGBA images become their ITU-R BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``
      (alpha dropped); any other channel count is refused;
    - DICOM ``MONOCHROME1`` (bright = low attenuation) read by ``PydicomReader`` is inverted so that dense structures
      are bright, as in ``MONOCHROME2``, PNG exports and DRRs (``ITKReader``, MONAI's default, has already done so).

    Args:
        invert_monochrome1: invert ``PydicomReader`` images whose metadata says ``MONOCHROME1``. Defaults to True.
        luminance: convert colour RGB/RGBA images to grey by luminance instead of refusing them (e.g. DRRs or X-rays
            exported through a colour pipeline). Defaults to False.

    Raises:
        ValueError: naming the file, for a 3D volume or an unexpected channel count.
    """

    BT601 = BT601

    def __init__(self, invert_monochrome1: bool = True, luminance: bool = False) -> None:
        self.invert_monochrome1 = invert_monochrome1
        self.luminance = luminance
        # NaN/Inf pixels or a blank image would become a confident "no finding" or an empty mask
        self.check_image = CheckImage(fail_constant=True)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """img: (C, X, Y[, 1]) -> (1, X, Y)."""
        return self.check_image(grey_radiograph(img, self.invert_monochrome1, self.luminance))
