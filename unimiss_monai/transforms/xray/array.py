"""Radiograph transforms on one channel-first array."""

from __future__ import annotations

import torch
from monai.transforms import Transform

from unimiss_monai.data.radiograph_checks import check_radiograph
from unimiss_monai.data.radiograph_polarity import NEGATIVE_CHEST, warn_if_negative_chest
from unimiss_monai.data.xray import BT601, grey_radiograph, source_name
from unimiss_monai.transforms.utility.array import CheckImage
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.once import sent_with_said

__all__ = ["AsGreyRadiograph"]


class AsGreyRadiograph(Transform):
    """Bring a loaded, channel-first radiograph to one grey channel and two spatial dims, ``(1, X, Y)``, by the rules
    of :func:`unimiss_monai.data.xray.grey_radiograph` (singleton dims dropped, 3D refused, colour reduced or refused,
    ``MONOCHROME1`` inverted), then check it with :class:`~unimiss_monai.transforms.CheckImage` and
    :func:`~unimiss_monai.data.radiograph_checks.check_radiograph` (a mask, label map or CT slice in HU given as the
    radiograph, a pixel size in another unit than mm); with ``chest=True``, warn of a chest film that looks like a
    negative (:func:`~unimiss_monai.data.radiograph_polarity.warn_if_negative_chest`).

    Args:
        invert_monochrome1: invert ``PydicomReader`` images whose metadata says ``MONOCHROME1``. Defaults to True.
        luminance: convert colour RGB/RGBA images to grey by luminance instead of refusing them (e.g. DRRs or X-rays
            exported through a colour pipeline). Defaults to False.
        min_size: fewest pixels along each side (a 2x2 thumbnail or a 3000x1 strip is no radiograph: resized to the
            network's input it would give a confident answer about nothing). Defaults to 16.
        chest: the image is meant to be a frontal chest radiograph (the chest bundles): warn, once per file, when it
            looks like a negative (air bright, bone dark). Defaults to False: the layout it goes by is a chest's.

    Raises:
        ValueError: naming the file, for a 3D volume, an unexpected channel count, a side under ``min_size``, or an
            image that is no radiograph.
    """

    BT601 = BT601
    #: a class default, set on an instance only when True: the disk cache keys its entries by the pickled transforms,
    #: so a pipeline without the chest check keeps the key (and the entries) it had before the option existed
    chest = False

    def __init__(self, invert_monochrome1: bool = True, luminance: bool = False, min_size: int = 16,
                 chest: bool = False) -> None:
        self.invert_monochrome1 = as_bool(invert_monochrome1, "invert_monochrome1")
        self.luminance = as_bool(luminance, "luminance")  # from the command line a value is a string
        self.min_size = int(min_size)
        if as_bool(chest, "chest"):
            self.chest = True
        # NaN/Inf pixels or a blank image would become a confident "no finding" or an empty mask
        self.check_image = CheckImage(fail_constant=True)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """img: (C, X, Y[, 1]) -> (1, X, Y)."""
        grey = self.check_image(grey_radiograph(img, self.invert_monochrome1, self.luminance))
        if min(grey.shape[1:]) < self.min_size:
            raise ValueError(f"{source_name(grey)}: is {'x'.join(map(str, grey.shape[1:]))} pixels, too small for a "
                             f"radiograph (at least {self.min_size} along each side); check the export or drop the "
                             "case")
        check_radiograph(grey, source_name(grey))
        if self.chest:  # after the checks above: a mask or a CT slice is refused, not called a negative
            warn_if_negative_chest(grey, source_name(grey))
        return grey


# a data-loading worker started by spawn would warn again of each negative the run's check of its data warned of
sent_with_said(AsGreyRadiograph, NEGATIVE_CHEST)
