"""Dictionary wrappers of :mod:`unimiss_monai.transforms.utility.array`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from unimiss_monai.data.case_outputs import one_case
from unimiss_monai.data.ct_io import check_not_air_only, warn_if_not_ct_hu
from unimiss_monai.data.grid_checks import check_ct_volume
from unimiss_monai.transforms.utility.array import CheckImage, check_not_empty, stored_shape
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.errors import failure_reason, root_cause

logger = logging.getLogger(__name__)

__all__ = ["CheckImageD", "CheckImageDict", "CheckImaged", "CheckSpatialDimsD", "CheckSpatialDimsDict", "CheckSpatialDimsd",
           "SkipFailedd"]


class CheckImaged(MapTransform):
    """Dictionary version of :class:`~unimiss_monai.transforms.CheckImage` (same arguments after ``keys``)."""

    def __init__(self, keys: KeysCollection, check_affine: bool = True, min_spacing: float = 1e-6,
                 fail_constant: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.checker = CheckImage(check_affine, min_spacing, fail_constant)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.checker(d[key])
        return d


CheckImageD = CheckImageDict = CheckImaged


class CheckSpatialDimsd(MapTransform):
    """Fail one case with a line naming the file when a channel-first image is empty or not
    ``spatial_dims``-dimensional (an X-ray listed as CT, a CT given to a 2D network), then run
    :class:`~unimiss_monai.transforms.CheckImage` on it; a 3D image holding nothing denser than air fails too.

    Args:
        keys: keys of the images to check.
        spatial_dims: 2 (radiographs, DRRs) or 3 (CT volumes).
        hint: what to do instead, appended to the message (e.g. ``"move it to the 'xray' section"``).
        squeeze_trailing: drop trailing singleton dimensions first (PNG readers give ``(C, H, W, 1)``). Defaults to
            False.
        fail_constant: a constant image fails its case (nothing to segment or classify). Defaults to False.
        check_ct_hu: warn per case when a 3D image does not look like CT in Hounsfield units. Defaults to False.
        fail_air_only: a 3D image (a CT in HU) fails its case when its every voxel is at most
            :data:`~unimiss_monai.data.ct_io.MAX_AIR_ONLY_HU` (it holds no body), its values are not HU, it is one
            slice or its voxel size is not a CT's (:func:`~unimiss_monai.data.grid_checks.check_ct_volume`): each was
            trained on or classified as if it were a CT without a word; so does a 3D image of more than one channel
            (a 4D file's phases). Defaults to True.
        allow_missing_keys: don't raise when a key is missing. Defaults to False.
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int, hint: str = "", squeeze_trailing: bool = False,
                 fail_constant: bool = False, check_ct_hu: bool = False, fail_air_only: bool = True,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims, self.hint = int(spatial_dims), hint
        # as_bool: from the command line a value is a string, and "false" would count as true
        self.squeeze_trailing = as_bool(squeeze_trailing, "squeeze_trailing")
        self.check_ct_hu = as_bool(check_ct_hu, "check_ct_hu")
        self.fail_air_only = as_bool(fail_air_only, "fail_air_only")
        # non-finite voxels or a degenerate grid would poison a whole batch or give a meaningless verdict
        self.check_image = CheckImage(fail_constant=fail_constant)
        self._said_not_hu: set[str] = set()

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            while self.squeeze_trailing and img.ndim > self.spatial_dims + 1 and img.shape[-1] == 1:
                img = img[..., 0]
            source = str(getattr(img, "meta", {}).get("filename_or_obj", key))
            # an empty file loads with too few axes: told as "a 0D image", it was sent to the other section
            check_not_empty(img, "volume" if self.spatial_dims == 3 else "image")
            if img.ndim - 1 != self.spatial_dims:
                shape, named = stored_shape(img)
                raise ValueError(f"{source}: a {len(shape)}D image ({named}) where a {self.spatial_dims}D one is needed"
                                 f"{'; ' + self.hint if self.hint else ''}")
            if self.fail_air_only and self.spatial_dims == 3 and img.shape[0] != 1:
                # the phases of a 4D file, loaded as channels: the networks take one, and failed with a traceback
                raise ValueError(f"{source}: has {stored_shape(img)[1]}, {img.shape[0]} volumes, not one 3D CT; "
                                 "split it and pass one 3D CT per file")
            d[key] = self.check_image(img)
            if self.fail_air_only and self.spatial_dims == 3:  # after check_image: its values are finite
                # one slice, or a voxel size in metres: classified or trained on as a CT, it gave an answer marked ok
                check_ct_volume(img.shape[1:], getattr(img, "affine", None), source)
                check_not_air_only(img, source)
            # once per file (and worker): a training run reads the file every epoch
            if self.check_ct_hu and self.spatial_dims == 3 and source not in self._said_not_hu:
                if warn_if_not_ct_hu(img, source, "the networks take CT in HU, so what is made of it is unlikely to "
                                     "mean anything"):
                    self._said_not_hu.add(source)
        return d


CheckSpatialDimsD = CheckSpatialDimsDict = CheckSpatialDimsd


class SkipFailedd(Transform):
    """Apply ``transform`` to a data dictionary unless it carries a non-empty ``failed_key``: a case that could not be
    read (:class:`~unimiss_monai.data.TolerantDataset`) or whose forward pass failed has nothing to post-process.
    A file the post-processing cannot write (``OSError``: a full disk, a file of the user's of that name) fails that
    case: its one-line reason goes under ``failed_key``, where :class:`~unimiss_monai.handlers.InferenceSummary`
    reads it, and the run goes on with the next case. The case is one of
    :func:`~unimiss_monai.data.case_outputs.one_case`: a failed case leaves none of the files it wrote (a mask whose
    overlay could not be written is removed, or given back the content of the earlier run it replaced).

    Args:
        transform: the post-processing of a case that worked.
        failed_key: key of the failure message. Defaults to ``"failed"``.
    """

    def __init__(self, transform: Callable, failed_key: str = "failed") -> None:
        self.transform = transform
        self.failed_key = failed_key

    def __call__(self, data: Mapping[Hashable, object]) -> Mapping[Hashable, object]:
        if data.get(self.failed_key):
            return data
        try:
            with one_case():  # all of the case's files, or none
                return self.transform(data)
        except Exception as err:
            if not isinstance(root_cause(err), OSError):  # behind MONAI's "applying transform" wrappers
                raise
            logger.error("post-processing failed: %s", failure_reason(err))
            return {**data, self.failed_key: failure_reason(err)}
