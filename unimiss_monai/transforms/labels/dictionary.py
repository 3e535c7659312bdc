"""Dictionary wrappers of :mod:`unimiss_monai.transforms.labels.array`, and the input contract of segmentation
bundles."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from unimiss_monai.data.ct_io import check_not_air_only, warn_if_not_ct_hu
from unimiss_monai.data.grid_checks import check_ct_volume, same_grid_reordered
from unimiss_monai.data.xray import source_name
from unimiss_monai.transforms.labels.array import SelectStructures
from unimiss_monai.transforms.utility.array import CheckImage, check_not_empty, stored_shape

__all__ = ["CheckSegmentationInputd", "CheckSegmentationInputD", "CheckSegmentationInputDict", "SelectStructuresD",
           "SelectStructuresDict", "SelectStructuresd"]


class SelectStructuresd(MapTransform):
    """Dictionary wrapper of :class:`SelectStructures`; ``keys`` are label-map keys."""

    backend = SelectStructures.backend

    def __init__(self, keys: KeysCollection, table: Mapping[int, int], max_value: int | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.select = SelectStructures(table, max_value)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.select(d[key])
        return d


SelectStructuresD = SelectStructuresDict = SelectStructuresd


class CheckSegmentationInputd(MapTransform):
    """Fail early, with the file name and the fix, on inputs a segmentation bundle cannot use.

    Runs after ``LoadImaged`` + ``EnsureChannelFirstd``. Checks: the image has ``spatial_dims`` spatial axes and
    ``in_channels`` channels, finite values and a non-degenerate grid (:class:`~unimiss_monai.transforms.CheckImage`); the label (if present) has one channel, the image's grid (shape and affine) and only
    integer values in ``0..num_classes - 1``.

    Args:
        keys: ``(image_key, label_key)``; a missing label key is skipped (inference).
        spatial_dims: 2 or 3.
        in_channels: expected image channels.
        num_classes: number of classes including background (label values ``0..num_classes - 1``).
        affine_atol: tolerance (mm) of the image/label affine comparison. Defaults to 1e-3.
    """

    def __init__(
        self, keys: KeysCollection = ("image", "label"), spatial_dims: int = 3, in_channels: int = 1, num_classes: int = 2, affine_atol: float = 1e-3
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        if len(self.keys) != 2:
            raise ValueError(f"CheckSegmentationInputd: keys must be (image_key, label_key), got {self.keys}")
        self.spatial_dims, self.in_channels, self.num_classes, self.affine_atol = spatial_dims, in_channels, num_classes, affine_atol

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> Mapping[Hashable, torch.Tensor]:
        image_key, label_key = self.keys
        image = data[image_key]
        src = source_name(image)
        kind = "3D volumes" if self.spatial_dims == 3 else "2D images"
        check_not_empty(image, "volume" if self.spatial_dims == 3 else "image")  # before its axes are counted
        if image.ndim - 1 != self.spatial_dims:
            shape, named = stored_shape(image)
            extra = shape[self.spatial_dims:]
            squeeze = " (re-save it without its trailing axes of length 1)" if extra and set(extra) == {1} else ""
            raise ValueError(f"{src}: a {len(shape)}D image ({named}) but this bundle segments {kind}; give it a "
                             f"{self.spatial_dims}D image{squeeze}")
        if image.shape[0] != self.in_channels:
            raise ValueError(f"{src}: image has {image.shape[0]} channels, the network takes {self.in_channels}; give one {self.in_channels}-channel image per case")
        # non-finite voxels, a degenerate grid or a constant image: one failed case, never an all-background label
        CheckImage(fail_constant=True)(image)
        if self.spatial_dims == 3:
            check_ct_volume(image.shape[1:], getattr(image, "affine", None), src)
            check_not_air_only(image, src)  # nothing to segment; scanner noise keeps it from counting as constant
            warn_if_not_ct_hu(image, src, "its segmentation is unlikely to mean anything")
        if label_key not in data:
            return data
        label = data[label_key]
        lsrc = source_name(label)
        if label.ndim != image.ndim or label.shape[0] != 1:
            raise ValueError(f"{lsrc}: label has shape {tuple(label.shape)}; expected one channel of spatial shape {tuple(image.shape[1:])} (a label map, not one-hot)")
        a_img, a_lab = getattr(image, "affine", None), getattr(label, "affine", None)
        if (a_img is not None and a_lab is not None and self.spatial_dims == 3
                and (tuple(label.shape[1:]) != tuple(image.shape[1:]) or not torch.allclose(
                    torch.as_tensor(a_img).double(), torch.as_tensor(a_lab).double(), atol=self.affine_atol))
                and same_grid_reordered(a_img, image.shape[1:], a_lab, label.shape[1:])):
            # one volume saved in two axis orders (RAS against LAS): reorienting loses nothing, resampling interpolates
            raise ValueError(f"{lsrc}: label holds the voxels of its image's grid ({src}) in another axis order or "
                             "direction; reorient it to the image's order, which loses nothing (nibabel: "
                             "label.as_reoriented, or save it again over the image in the viewer), rather than "
                             "resampling it")
        if tuple(label.shape[1:]) != tuple(image.shape[1:]):
            raise ValueError(f"{lsrc}: label grid {tuple(label.shape[1:])} differs from image grid {tuple(image.shape[1:])} ({src}); resample the label onto the image")
        if a_img is not None and a_lab is not None and not torch.allclose(torch.as_tensor(a_img).double(), torch.as_tensor(a_lab).double(), atol=self.affine_atol):
            raise ValueError(f"{lsrc}: label affine differs from the image affine of {src}; the two are on different grids, resample the label onto the image")
        values = torch.unique(torch.as_tensor(label))
        fractions = values[values != values.round()]
        if fractions.numel():  # a label resampled with linear interpolation: no class count makes 1.5 a class
            raise ValueError(f"{lsrc}: label values {fractions[:8].tolist()} are not whole numbers, as after "
                             "resampling a label map with linear interpolation; resample it with nearest-neighbour "
                             "interpolation")
        bad = values[(values < 0) | (values >= self.num_classes)]
        if bad.numel():
            raise ValueError(
                f"{lsrc}: label values {bad[:8].tolist()} are outside the declared classes 0..{self.num_classes - 1}; "
                "map them (e.g. unimiss_monai.transforms.SelectStructuresd for TotalSegmentator maps) or declare them "
                "(in a bundle: one name per class in class_names, which sets num_classes)"
            )
        return data


CheckSegmentationInputD = CheckSegmentationInputDict = CheckSegmentationInputd
