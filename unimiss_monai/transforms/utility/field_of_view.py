"""The field of view a classifier was trained on: a volume far larger or smaller than the training inputs is refused,
or on request cut to its central training field, instead of being squeezed into the network input.

A classifier that resizes every input to one network size learns the physical scale of its training crops: a 40 mm
mass fills the same share of every input. A whole CT resized to that size shrinks its anatomy by the ratio of the two
fields (a 360 mm chest into a 90 mm crop's input: four times), so a mass looks like a nodule, a nodule disappears,
and the verdict answers a question the model was never asked. Measuring the extent (voxels x spacing, from the
affine) before the resize catches this per case.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import CenterSpatialCrop, MapTransform, Transform

from unimiss_monai.conventions import voxel_spacing
from unimiss_monai.data.xray import source_name

logger = logging.getLogger(__name__)

__all__ = ["FIELD_OF_VIEW_MODES", "CheckFieldOfView", "CheckFieldOfViewD", "CheckFieldOfViewDict", "CheckFieldOfViewd",
           "field_of_view_mm"]

#: what to do with a volume outside the tolerance: fail its case, or cut every axis to its central training field;
#: or check nothing
FIELD_OF_VIEW_MODES = ("refuse", "centre", "ignore")


def field_of_view_mm(img: torch.Tensor) -> tuple[float, ...]:
    """Extent in mm of a channel-first image along each spatial axis, in its axis order: voxels x spacing (the norms
    of the affine's spatial columns), i.e. from the first voxel's outer edge to the last one's."""
    affine = getattr(img, "affine", None)
    if affine is None:
        raise ValueError(f"{source_name(img)}: has no affine, so its field of view in mm is unknown; load it with "
                         "LoadImage (a MetaTensor) or pass field_mm=None")
    spatial = tuple(img.shape[1:])
    # every world axis of each column: a 2D image lying in 3D space (a DRR) has a row axis along z
    spacing = voxel_spacing(np.asarray(torch.as_tensor(affine), dtype=np.float64), len(spatial))
    return tuple(float(n * s) for n, s in zip(spatial, spacing))


def _mm(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.0f}" for v in values)


class CheckFieldOfView(Transform):
    """Compare a channel-first image's extent (mm) with the field of view of the training inputs, per case.

    Let ``f`` be the largest factor, over the spatial axes and either way, between the image's extent and
    ``field_mm``. Up to ``warn_above`` the image passes silently; up to ``tolerance`` it passes with a warning (its
    anatomy reaches the network ``f`` times smaller or larger than in training); beyond, ``mode`` decides:

    - ``"refuse"``: raise ``ValueError`` with one line naming the file, both extents and the fix, which the bundles'
      tolerant datasets turn into one failed case while the others go on;
    - ``"centre"``: first cut every axis longer than ``field_mm`` to its central ``field_mm`` (whatever ``f``), then
      check the rest (an axis shorter than the training field by more than ``tolerance`` is still refused);
    - ``"ignore"``: no check at all, as with ``field_mm=None`` (a model that learnt no scale, e.g. a smoke test's);
      one warning is logged when the transform is built, none per case.

    Args:
        field_mm: extent of the training inputs along each spatial axis, in the image's axis order (after
            ``Orientationd``: x, y, z). ``None`` turns the check off (the image passes unchanged).
        mode: ``"refuse"``, ``"centre"`` or ``"ignore"``. Defaults to ``"refuse"``.
        tolerance: largest accepted factor ``f``. Defaults to 2.
        warn_above: factor ``f`` above which an accepted image is warned about. Defaults to 1.25.
        hint: what the user can do instead, appended to the refusal (e.g. the bundle's options).

    Returns the image, cut in ``"centre"`` mode (with its affine moved to the cut's first voxel).
    """

    def __init__(self, field_mm: Sequence[float] | None, mode: str = "refuse", tolerance: float = 2.0,
                 warn_above: float = 1.25, hint: str = "") -> None:
        if mode not in FIELD_OF_VIEW_MODES:
            raise ValueError(f"CheckFieldOfView: mode must be one of {FIELD_OF_VIEW_MODES} (the bundles' "
                             f"field_of_view), got {mode!r}")
        self.field = None if field_mm is None else tuple(float(v) for v in field_mm)
        if self.field is not None and not all(np.isfinite(v) and v > 0 for v in self.field):
            raise ValueError(f"CheckFieldOfView: field_mm must be positive mm per axis (the bundles' "
                             f"field_of_view_mm), got {field_mm!r}; mode 'ignore' turns the check off")
        if not 1.0 <= float(warn_above) <= float(tolerance):
            raise ValueError(f"CheckFieldOfView: need 1 <= warn_above <= tolerance, got {warn_above} and {tolerance}")
        self.mode, self.tolerance, self.warn_above, self.hint = mode, float(tolerance), float(warn_above), hint
        if mode == "ignore":
            # said once, when the run builds its pipeline (not per case, and not once per loader worker): with the
            # check off a whole CT is classified like a crop, without a word in the per-case log
            logger.warning("field_of_view is 'ignore': the field-of-view check is off, so inputs of any extent (a "
                           "whole CT too) are classified without being refused; pass --field_of_view refuse (or "
                           "centre) to keep it on")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.field is None or self.mode == "ignore":
            return img
        if len(self.field) != img.ndim - 1:
            raise ValueError(f"{source_name(img)}: {img.ndim - 1} spatial axes but field_mm has {len(self.field)} "
                             f"({self.field}); give one extent per axis")
        source, whole = source_name(img), field_of_view_mm(img)
        if self.mode == "centre":
            img = self._centre(img, whole)
        extent = field_of_view_mm(img)
        ratios = [e / f for e, f in zip(extent, self.field)]
        factor = max(max(ratios), 1.0 / min(ratios))
        larger = max(ratios) >= 1.0 / min(ratios)
        way = "larger" if larger else "smaller"
        seen = f"its anatomy would reach the network {factor:.1f}x {'smaller' if larger else 'larger'} than in training"
        what = f"{source}: field of view {_mm(extent)} mm is {factor:.1f}x {way} than the {_mm(self.field)} mm"
        if factor > self.tolerance:
            raise ValueError(f"{what} of the inputs this model was trained on, so {seen}; "
                             f"{self.hint or 'pass inputs of about the training field'}")
        if factor > self.warn_above:
            message = f"{what} of the training inputs; {seen}, so read its result with care"
            warnings.warn(message, UserWarning, stacklevel=2)
            logger.warning(message)
        if extent != whole:
            logger.info("%s: classifying the central %s mm of its %s mm", source, _mm(extent), _mm(whole))
        return img

    def _centre(self, img: torch.Tensor, extent: Sequence[float]) -> torch.Tensor:
        """``img`` with every axis longer than the field cut to its central field (whole voxels, at least one)."""
        spatial = tuple(img.shape[1:])
        spacing = [e / n for e, n in zip(extent, spatial)]
        roi = [min(n, max(1, round(f / s))) for n, f, s in zip(spatial, self.field, spacing)]
        return img if tuple(roi) == spatial else CenterSpatialCrop(roi)(img)


class CheckFieldOfViewd(MapTransform):
    """Dictionary version of :class:`CheckFieldOfView` (same arguments after ``keys``)."""

    def __init__(self, keys: KeysCollection, field_mm: Sequence[float] | None, mode: str = "refuse",
                 tolerance: float = 2.0, warn_above: float = 1.25, hint: str = "",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckFieldOfView(field_mm, mode, tolerance, warn_above, hint)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.checker(d[key])
        return d


CheckFieldOfViewD = CheckFieldOfViewDict = CheckFieldOfViewd
