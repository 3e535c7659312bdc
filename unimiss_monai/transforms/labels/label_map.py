"""A viewer's label map (one channel, values ``0..N``) as the ``N`` binary masks of a multi-label network.

3D Slicer, OHIF and MONAI Label save a segmentation as one label map: one value per voxel, 0 background, ``i`` the
``i``-th structure. Networks with one sigmoid channel per structure (structures that overlap in projection, as in a
chest radiograph) train on ``N`` binary masks instead. A label map cannot hold two structures at one pixel: where
structures overlap, it keeps the one the viewer (or whoever painted it) put there, and the other structure's mask has a
hole there after conversion.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type

from unimiss_monai.data.dicom_pixel_size import on_image_grid, with_header_pixel_size
from unimiss_monai.data.radiograph_checks import check_label_on_radiograph
from unimiss_monai.data.xray import drop_trailing_singletons, source_name
from unimiss_monai.utils.logged_warnings import collecting, note
from unimiss_monai.utils.once import first_time, is_said, sent_with_said

__all__ = ["LabelMapToMasks", "LabelMapToMasksD", "LabelMapToMasksDict", "LabelMapToMasksd"]

logger = logging.getLogger(__name__)

#: the topic of :mod:`unimiss_monai.utils.once` under which label files warned of as two-sided are kept: once per file
#: in a run. A data-loading worker forked after the run's check of its data inherits them; one spawned (macOS,
#: Windows, forkserver) receives them with the transform (:func:`~unimiss_monai.utils.once.sent_with_said`); ranks
#: pool them after a dealt-out check
TWO_SIDED = "two-sided label"


class LabelMapToMasks(Transform):
    """Turn a one-channel label map ``(1, *spatial)`` with values ``0..N`` into ``N`` binary masks ``(N, *spatial)``,
    channel ``i`` being value ``i + 1``; ``N``-channel masks pass through unchanged. Which one a label is, is told by
    its channel count (with ``N = 1`` both read the same).

    Args:
        num_structures: ``N``, the number of structures (mask channels; label-map values ``1..N``).
        structures: their names, used only in error messages. Defaults to none.

    Raises:
        ValueError: naming the label's file, for a channel count other than 1 or ``N``, or label-map values that are
            not integers in ``0..N``.

    Examples::

        LabelMapToMasks(5)(label_map)  # (1, X, Y), values 0..5 -> (5, X, Y) in {0, 1}
    """

    backend = [torch.Tensor.__name__, np.ndarray.__name__]

    def __init__(self, num_structures: int, structures: Sequence[str] = ()) -> None:
        if int(num_structures) < 1:
            raise ValueError(f"LabelMapToMasks: num_structures must be >= 1, got {num_structures}")
        self.num_structures, self.structures = int(num_structures), list(structures)

    def _meaning(self) -> str:
        names = f": {', '.join(f'{i + 1} {s}' for i, s in enumerate(self.structures))}" if self.structures else ""
        return f"0 background, 1..{self.num_structures} the structures{names}"

    def _warn_two_sided(self, masks: torch.Tensor, name: str) -> None:
        """Warn of a radiograph's structure named ``*_left`` / ``*_right`` whose label-map value covers both sides of
        the image, a quarter or more on each: a combined 0/1 mask of both lungs, read by value, trained ``lung_left``
        on both lungs, unsaid. Once per file in a process, and no data-loading worker says again what the main
        process said (the bundles check their data there, before loading). ``masks``: ``(N, X, Y)``, X across. A
        disk-cache entry computed now holds the warning even where it was said before (:func:`note`)."""
        if masks.ndim != 3 or (is_said(TWO_SIDED, name) and not collecting()):
            return
        for structure, mask in zip(self.structures, masks):
            total = int(mask.sum())
            if not structure.endswith(("_left", "_right")) or total < 50:
                continue
            share = float(mask[: mask.shape[0] // 2].sum()) / total
            if min(share, 1 - share) >= 0.25:
                args = (name, self.structures.index(structure) + 1, structure, 100 * share, 100 * (1 - share),
                        structure, self._meaning())
                message = ("%s: its value %d (%s) covers both sides of the image (%.0f%% and %.0f%% of it either side "
                           "of the middle), as a mask of both lungs would, where %s lies on one side: give each "
                           "structure its own value (%s) or one binary mask per structure")
                if first_time(TWO_SIDED, name):
                    logger.warning(message, *args)
                else:  # said before in this run: kept with the entry being computed all the same
                    note(logger, logging.WARNING, message, *args)
                return

    def __call__(self, label: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """label: ``(1, *spatial)`` label map or ``(N, *spatial)`` masks -> ``(N, *spatial)``, the input's type and
        dtype (a MetaTensor keeps its metadata)."""
        n, name = self.num_structures, source_name(label)
        channels = label.shape[0]
        if channels == n:
            return label
        if channels != 1:
            raise ValueError(f"{name}: label has {channels} channels; expected 1 (a label map, {self._meaning()}) or {n} (one binary mask per structure)")
        values = torch.as_tensor(label)
        present = torch.unique(values)
        bad = present[(present != present.round()) | (present < 0) | (present > n)]
        if bad.numel():
            raise ValueError(f"{name}: label map values {bad[:8].tolist()} are outside 0..{n} ({self._meaning()}); relabel the map or save one binary mask per structure")
        idx = values[0].round().long()
        masks = torch.stack([idx == v for v in range(1, n + 1)])
        self._warn_two_sided(masks, name)
        if isinstance(label, MetaTensor):
            # a fresh MetaTensor: the label's grid and file name, no per-channel history of the map's own
            return MetaTensor(masks.to(label.dtype), meta=dict(label.meta))
        out, *_ = convert_to_dst_type(masks, label, dtype=label.dtype)
        return out


class LabelMapToMasksd(MapTransform):
    """Dictionary version of :class:`LabelMapToMasks` that also checks the label against its image: a label may be a
    viewer's one-channel label map (values ``0..N``) or the ``N`` binary masks; either comes out as the masks.

    Runs after ``LoadImaged`` (channel first) and the image's own conversion (e.g. ``AsGreyRadiographd``). Trailing
    singleton axes of a label saved with more axes than its 2D image (NIfTI ``(X, Y, 1)``) are dropped first.

    Args:
        keys: label key(s).
        image_key: key of the image the label belongs to; ``None`` skips the grid check. Defaults to ``"image"``.
        structures: names of the ``N`` structures, in mask-channel order (label-map value ``i + 1`` is
            ``structures[i]``).

    Raises:
        ValueError: one line naming the label and image files, for a label whose grid differs from the image's (its
            shape; of a 2D NIfTI label and image, their affines too), whose channel count is neither 1 nor ``N``,
            or whose label-map values are not in ``0..N``.
    """

    backend = LabelMapToMasks.backend

    def __init__(self, keys: KeysCollection, image_key: str | None = "image", structures: Sequence[str] = (),
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if not structures:
            raise ValueError("LabelMapToMasksd: give the structures, in mask-channel order")
        self.image_key = image_key
        self.converter = LabelMapToMasks(len(structures), structures)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image = d[self.image_key] if self.image_key is not None else None
        for key in self.key_iterator(d):
            label = d[key]
            if image is not None and image.ndim == 3:  # 2D image: (1, X, Y), a DICOM at its header's pixel size
                label = with_header_pixel_size(drop_trailing_singletons(label), source_name(label))
            if image is not None and tuple(label.shape[1:]) != tuple(image.shape[1:]):
                flipped = tuple(label.shape[1:]) == tuple(image.shape[1:])[::-1]
                raise ValueError(
                    f"{source_name(label)}: label grid {tuple(label.shape[1:])} differs from the grid "
                    f"{tuple(image.shape[1:])} of its image {source_name(image)}"
                    + ("; it looks transposed (its rows are the image's columns): save it transposed back"
                       if flipped else "; save the label on the image's grid")
                )
            if image is not None and image.ndim == 3:  # a shape alone leaves a label shifted in space unseen
                check_label_on_radiograph(label, image, source_name(label), source_name(image))
                label = on_image_grid(label, image, source_name(label))  # a DICOM label that gives no pixel size
            try:
                d[key] = self.converter(label)
            except ValueError as err:
                if image is None:
                    raise
                # the converter's message starts with the label's name: say which image it labels too
                name, message = source_name(label), str(err)
                raise ValueError(f"{name} (label of {source_name(image)}){message[len(name):]}") from None
        return d


sent_with_said(LabelMapToMasks, TWO_SIDED)

LabelMapToMasksD = LabelMapToMasksDict = LabelMapToMasksd
