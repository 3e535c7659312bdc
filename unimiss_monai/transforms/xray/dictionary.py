"""Dictionary wrappers of :mod:`unimiss_monai.transforms.xray.array`, and the check of multi-label radiograph masks."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from unimiss_monai.data.dicom_pixel_size import on_image_grid, with_header_pixel_size
from unimiss_monai.data.radiograph_checks import check_label_on_radiograph
from unimiss_monai.data.xray import drop_trailing_singletons, source_name
from unimiss_monai.transforms.xray.array import AsGreyRadiograph

__all__ = [
    "AsGreyRadiographD",
    "AsGreyRadiographDict",
    "AsGreyRadiographd",
    "CheckMultiLabelMaskD",
    "CheckMultiLabelMaskDict",
    "CheckMultiLabelMaskd",
]


class AsGreyRadiographd(MapTransform):
    """Dictionary version of :class:`AsGreyRadiograph`."""

    def __init__(self, keys: KeysCollection, invert_monochrome1: bool = True, luminance: bool = False,
                 min_size: int = 16, allow_missing_keys: bool = False, chest: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = AsGreyRadiograph(invert_monochrome1, luminance, min_size, chest)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class CheckMultiLabelMaskd(MapTransform):
    """Check a multi-label mask ``(C, X, Y[, 1])`` against its image: one channel per structure, values in {0, 1},
    same spatial size as the image and, both NIfTI, the same affine. Trailing singleton spatial dims of the mask are
    dropped.

    Args:
        keys: mask key(s).
        image_key: key of the image the mask belongs to (already through :class:`AsGreyRadiographd`).
        structures: names of the structures, one per mask channel (their number is checked).
        allow_missing_keys: skip missing mask keys; when ``image_key`` is missing, check the masks without the size check
            (otherwise a missing key raises ``KeyError``).

    Raises:
        ValueError: naming the file, for a wrong channel count, values outside {0, 1}, a size or affine mismatch.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", structures: Sequence[str] = (), allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.structures = list(structures)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        # a missing image is allowed with allow_missing_keys: the masks are checked but not their size
        image = d.get(self.image_key) if self.allow_missing_keys else d[self.image_key]
        for key in self.key_iterator(d):
            mask = d[key]
            name = source_name(mask)
            mask = with_header_pixel_size(drop_trailing_singletons(mask), name)  # as its image: grey_radiograph
            if self.structures and mask.shape[0] != len(self.structures):
                raise ValueError(f"{name}: label has {mask.shape[0]} channels, expected {len(self.structures)} (one binary mask per structure: {self.structures}); save masks as (X, Y, 1, C)")
            values = torch.unique(torch.as_tensor(mask)).tolist()
            bad = [v for v in values if v not in (0, 1)]
            if bad:
                fix = ("a mask saved as an 8-bit image, 0/255: save it as 0/1" if 255 in bad else
                       "save each structure's channel as 0/1 (a resampled mask: nearest neighbour keeps 0/1)")
                raise ValueError(f"{name}: label values {bad[:5]} are outside the declared set {{0, 1}} (each channel "
                                 f"is a binary mask of one structure); {fix}")
            if image is not None and tuple(mask.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(f"{name}: label spatial size {tuple(mask.shape[1:])} does not match image {source_name(image)} size {tuple(image.shape[1:])}; resample the label to the image grid")
            if image is not None:  # same size, yet a NIfTI label may lie elsewhere in space than its image
                check_label_on_radiograph(mask, image, name, source_name(image))
                mask = on_image_grid(mask, image, name)  # a DICOM label that gives no pixel size: the image's mm
            d[key] = mask
        return d


AsGreyRadiographD = AsGreyRadiographDict = AsGreyRadiographd
CheckMultiLabelMaskD = CheckMultiLabelMaskDict = CheckMultiLabelMaskd
