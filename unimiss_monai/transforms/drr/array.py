"""Array transform: render DRRs from a channel-first CT on the fly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Randomizable, Transform

from unimiss_monai.drr.geometry import Pose, as_pose, detector_affine
from unimiss_monai.drr.render import as_poses, render
from unimiss_monai.drr.volume import volume_affine, volume_center

__all__ = ["DRRProject", "RandDRRProject"]


class DRRProject(Transform):
    """Channel-first HU CT ``(1, X, Y, Z)`` MetaTensor (with its affine) -> DRR ``(V, X, Y)`` MetaTensor.

    The output follows the package's 2D layout, that of a PNG read by MONAI's ``LoadImage``: ``X`` runs along the
    detector columns (left to right), ``Y`` along its rows (top to bottom), so each view is the transpose of the
    row-major ``(H, W)`` image of :func:`unimiss_monai.drr.render` and one view gives ``(1, W, H)``. A DRR rendered
    here and the same DRR written as a PNG and loaded back therefore reach the 2D branch identically.
    The output affine is the 2-D pixel grid scaled by the detector ``pixel_spacing`` (``diag(col, row, 1)``), so
    saved images carry the detector pixel size; ``meta["drr_detector_affine"]`` holds the full 4x4 world placement of
    the detector in the same column-first order (:func:`unimiss_monai.drr.detector_affine` with its first two columns
    swapped), for the first view, with the isocentre and ``principal_point`` the renderer used (the given
    ``isocenter``, else the volume centre), so it maps pixel ``(x, y, 0, 1)`` to the world (RAS+, mm) point of that
    rendered pixel.

    Args:
        views: view names / :class:`~unimiss_monai.drr.Pose` / pose dicts (see :func:`unimiss_monai.drr.render`).
        detector_shape, pixel_spacing, sdd, sid, method, output: as in :func:`unimiss_monai.drr.render`.
        render_kwargs: further keyword arguments for :func:`unimiss_monai.drr.render` (``mu_water``, ``i0``...);
            ``affine_space`` left out reads a MetaTensor's affine in the space of its ``meta["space"]``.

    The DRR keeps the CT's ``meta["filename_or_obj"]``, so a later check or writer names the CT it came from.
    """

    backend = [torch.Tensor.__name__, np.ndarray.__name__]

    def __init__(self, views=("AP",), detector_shape=(256, 256), pixel_spacing=1.5625, sdd: float = 1020.0,
                 sid: float = 850.0, method: str = "siddon", output: str = "line_integral", **render_kwargs):
        self.poses = as_poses(views)
        self.kwargs = dict(detector_shape=detector_shape, pixel_spacing=pixel_spacing, sdd=sdd, sid=sid,
                           method=method, output=output, **render_kwargs)

    def __call__(self, img, affine=None, poses: Sequence[Pose] | None = None) -> MetaTensor:
        if affine is None and not hasattr(img, "affine"):
            raise ValueError("DRRProject needs the CT affine: pass a MetaTensor (e.g. from LoadImage) or affine=")
        # a MetaTensor's affine in the space its metadata names (an ITK reader may leave it LPS)
        ras = volume_affine(img, affine, self.kwargs.get("affine_space"))
        if img.ndim != 4 or img.shape[0] != 1:
            raise ValueError(f"DRRProject expects a channel-first CT (1, X, Y, Z), got shape {tuple(img.shape)}")
        vol = img[0].as_tensor() if isinstance(img, MetaTensor) else img[0]
        poses = self.poses if poses is None else list(poses)
        # render() is row-major (V, H, W); the package's 2D images are column-first (V, X, Y)
        out = render(vol, ras, views=poses, **{**self.kwargs, "affine_space": "RAS"}).transpose(-2, -1).contiguous()
        row, col = np.broadcast_to(np.asarray(self.kwargs["pixel_spacing"], dtype=float), (2,))
        iso = self.kwargs.get("isocenter")
        if iso is None:  # render() rotates about the volume centre, in its RAS+ world
            iso = volume_center(vol.shape, ras)
        row_first = detector_affine(poses[0], self.kwargs["detector_shape"], self.kwargs["pixel_spacing"],
                                    self.kwargs["sdd"], self.kwargs["sid"], isocenter=iso,
                                    principal_point=self.kwargs.get("principal_point", (0.0, 0.0)))
        meta = {"drr_views": [p.view for p in poses], "drr_detector_affine": torch.as_tensor(row_first[:, [1, 0, 2, 3]])}
        source = (getattr(img, "meta", None) or {}).get("filename_or_obj")
        if source:
            meta["filename_or_obj"] = source
        return MetaTensor(out, affine=torch.diag(torch.tensor([col, row, 1.0, 1.0], dtype=torch.float64)), meta=meta)


class RandDRRProject(Randomizable, DRRProject):
    """:class:`DRRProject` with a random pose jitter per call: rotations uniform in ``+-rotation_range`` degrees and
    translations in ``+-translation_range`` mm (per patient axis), added to each view, with probability ``prob``."""

    def __init__(self, views=("AP",), rotation_range=(0.0, 0.0, 0.0), translation_range=(0.0, 0.0, 0.0),
                 prob: float = 1.0, **kwargs):
        super().__init__(views, **kwargs)
        self.rotation_range = np.broadcast_to(np.asarray(rotation_range, dtype=float), (3,))
        self.translation_range = np.broadcast_to(np.asarray(translation_range, dtype=float), (3,))
        self.prob = prob
        self._poses: list[Pose] = self.poses

    def randomize(self, data=None) -> None:
        if self.R.random_sample() >= self.prob:
            self._poses = self.poses
            return
        self._poses = [
            as_pose({"view": p.view,
                     "rotation": np.add(p.rotation, self.R.uniform(-self.rotation_range, self.rotation_range)),
                     "translation": np.add(p.translation, self.R.uniform(-self.translation_range, self.translation_range))})
            for p in self.poses
        ]

    def __call__(self, img, affine=None, randomize: bool = True) -> MetaTensor:  # type: ignore[override]
        if randomize:
            self.randomize()
        return super().__call__(img, affine, poses=self._poses)
