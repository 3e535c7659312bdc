"""Cone-beam C-arm geometry in physical units (mm), in the NIfTI RAS+ world of the volume's affine.

World axes follow NIfTI RAS+: ``+x`` = patient's Right, ``+y`` = Anterior, ``+z`` = Superior (an LPS affine, as
DICOM/ITK write it, is accepted by the renderer with ``affine_space="LPS"``). Voxel ``(i, j, k)`` of a volume indexed as
``volume[i, j, k]`` has its centre at ``affine @ (i, j, k, 1)``.

Display convention (defined in :mod:`unimiss_monai.conventions`, implemented here in the detector axes): row 0 at
the patient's head; ``AP`` seen from the source in front of the patient (the patient's right on the image left); the
views of :data:`~unimiss_monai.conventions.VIEWS_SEEN_FROM_DETECTOR` (``PA``, ``LAT_LEFT``, ``LAT_RIGHT``) mirrored
relative to their beam's-eye view, as their films are hung: ``PA`` like ``AP``, ``LAT_LEFT`` (left side against the
detector) with the anterior side on the image left, ``LAT_RIGHT`` with it on the image right. The stored DRR, its
affine and every picture of it share this orientation, so nothing downstream flips an image.

Pose: a named view is a rotation of the AP C-arm about the superior axis; ``Pose.rotation = (rx, ry, rz)`` (degrees)
then rotates the whole C-arm about the patient's axes through the isocentre, first about ``x`` (left-right axis,
positive tilts the source towards the head), then ``y`` (posterior-anterior), then ``z`` (inferior-superior), all
right-handed in RAS+: ``R = Rz @ Ry @ Rx @ R_view``. ``Pose.translation`` (mm, RAS+) moves the isocentre, i.e. the
whole C-arm, relative to the patient. The named view also fixes how the image is hung, whatever the rotation: an oblique
``Pose("LAT_LEFT", ...)`` stays hung like a left lateral, while ``Pose("AP", rotation=(0, 0, -90))`` casts the same rays
as ``LAT_LEFT`` but is hung like an AP view, i.e. mirrored left-right relative to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unimiss_monai.conventions import VIEWS_SEEN_FROM_DETECTOR

__all__ = ["VIEW_ANGLES", "VIEW_ALIASES", "Pose", "ConeBeam", "as_pose", "canonical_view", "canonical_views",
           "view_rotation", "detector_affine"]

# named view -> rotation of the AP C-arm about the superior (+z) axis, degrees
VIEW_ANGLES: dict[str, float] = {"AP": 0.0, "PA": 180.0, "LAT_LEFT": -90.0, "LAT_RIGHT": 90.0}
VIEW_ALIASES: dict[str, str] = {
    "AP": "AP",
    "ANTERIOR_POSTERIOR": "AP",
    "PA": "PA",
    "POSTERIOR_ANTERIOR": "PA",
    "LAT_LEFT": "LAT_LEFT",
    "LL": "LAT_LEFT",
    "LEFT_LATERAL": "LAT_LEFT",
    "LAT": "LAT_LEFT",
    "LATERAL": "LAT_LEFT",
    "LAT_RIGHT": "LAT_RIGHT",
    "RL": "LAT_RIGHT",
    "RIGHT_LATERAL": "LAT_RIGHT",
}

# AP C-arm before any rotation: unit vector isocentre->source, detector column and row directions (RAS+)
_AP_SOURCE_DIR = np.array([0.0, 1.0, 0.0])
_AP_COL_DIR = np.array([-1.0, 0.0, 0.0])  # towards the patient's left: patient right on image left
_AP_ROW_DIR = np.array([0.0, 0.0, -1.0])  # row 0 superior


def _view_key(name: str) -> str:
    return str(name).strip().upper().replace("-", "_").replace(" ", "_")


def canonical_view(name: str) -> str:
    """Canonical view name for a case-insensitive alias (``"ll"``, ``"Lat-Left"`` -> ``"LAT_LEFT"``)."""
    key = _view_key(name)
    if key not in VIEW_ALIASES:
        raise ValueError(
            f"unknown DRR view {name!r}; valid names (case-insensitive): {', '.join(VIEW_ALIASES)}"
        )
    return VIEW_ALIASES[key]


def canonical_views(names: Sequence[str], say: Callable[..., Any] | None = None) -> list[str]:
    """:func:`canonical_view` of each of ``names``; with ``say`` (``logger.info``), ``say("view %r is %s", name,
    view)`` once for each name that is another name of its view (``"lateral"``: ``LAT_LEFT``), as the outputs are
    named by the view, not by the name given. A view's own name in any case or with ``-`` (``"lat-left"``) says
    nothing."""
    views = [canonical_view(name) for name in names]
    for name, view in dict(zip(map(str, names), views)).items():
        if say is not None and _view_key(name) != view:
            say("view %r is %s", name, view)
    return views


def _rot(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    a, b = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


@dataclass(frozen=True)
class Pose:
    """A C-arm pose: a named view, then rotations (degrees) about the patient's x, y, z axes, then a translation (mm).

    Args:
        view: ``"AP"``, ``"PA"``, ``"LAT_LEFT"`` or ``"LAT_RIGHT"``, or another name of one (:data:`VIEW_ALIASES`:
            ``"LL"``, ``"LATERAL"``, ...), case-insensitive.
        rotation: ``(rx, ry, rz)`` degrees, applied in the order x, y, z about the isocentre (RAS+, right-handed).
        translation: ``(tx, ty, tz)`` mm, shift of the isocentre (RAS+).
    """

    view: str = "AP"
    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "view", canonical_view(self.view))
        for name in ("rotation", "translation"):
            value = tuple(float(v) for v in np.asarray(getattr(self, name), dtype=float).reshape(-1))
            if len(value) != 3:
                raise ValueError(f"Pose.{name} must have 3 values (x, y, z), got {getattr(self, name)!r}")
            if not all(math.isfinite(v) for v in value):  # a NaN angle would turn every ray, and the image, to NaN
                raise ValueError(f"Pose.{name} must be finite, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)

    def rotation_matrix(self) -> np.ndarray:
        """3x3 rotation of the C-arm from its AP position, ``Rz @ Ry @ Rx @ R_view``."""
        rx, ry, rz = self.rotation
        return _rot(2, rz) @ _rot(1, ry) @ _rot(0, rx) @ _rot(2, VIEW_ANGLES[self.view])


def as_pose(view: str | Pose | Mapping) -> Pose:
    """A :class:`Pose` from a view name, a pose, or a dict with keys ``view``, ``rotation``, ``translation``."""
    if isinstance(view, Pose):
        return view
    if isinstance(view, str):
        return Pose(view)
    if isinstance(view, Mapping):
        unknown = set(view) - {"view", "rotation", "translation"}
        if unknown:
            raise ValueError(f"unknown pose key(s) {sorted(unknown)}; a pose dict takes 'view', 'rotation', 'translation'")
        return Pose(**view)
    raise TypeError(f"a DRR view must be a name, a Pose or a dict, got {type(view).__name__}")


def view_rotation(view: str | Pose | Mapping) -> np.ndarray:
    """3x3 C-arm rotation of a view (see :meth:`Pose.rotation_matrix`)."""
    return as_pose(view).rotation_matrix()


def _pair(value, name: str) -> tuple[float, float]:
    """``(row, col)`` of a scalar (the same for both) or a pair; one line naming ``name`` for anything else."""
    values = np.asarray(value, dtype=float).ravel()
    if values.size not in (1, 2):
        raise ValueError(f"{name} must be a number or (row, col), got {value!r}")
    return tuple(float(v) for v in np.broadcast_to(values, (2,)))


@dataclass(frozen=True)
class ConeBeam:
    """Intrinsics of a flat-panel cone-beam system.

    Args:
        detector_shape: ``(H, W)`` pixels.
        pixel_spacing: mm, scalar or ``(row, col)``.
        sdd: source-to-detector distance, mm.
        sid: source-to-isocentre distance, mm (``0 < sid < sdd``).
        principal_point: ``(row, col)`` offset in mm of the point hit by the central ray from the detector centre.
    """

    detector_shape: tuple[int, int] = (256, 256)
    pixel_spacing: tuple[float, float] = field(default=(1.5625, 1.5625))
    sdd: float = 1020.0
    sid: float = 850.0
    principal_point: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        shape = tuple(int(s) for s in _pair(self.detector_shape, "detector_shape"))
        spacing = _pair(self.pixel_spacing, "pixel_spacing")
        pp = _pair(self.principal_point, "principal_point")
        if min(shape) < 1:
            raise ValueError(f"detector_shape must be positive (H, W), got {self.detector_shape!r}")
        # NaN passes every comparison below unnoticed, and a NaN spacing renders a black image without a word
        if not all(math.isfinite(v) for v in (*spacing, *pp, float(self.sdd), float(self.sid))):
            raise ValueError(f"pixel_spacing, principal_point, sdd and sid must be finite, got {self.pixel_spacing!r}, "
                             f"{self.principal_point!r}, sdd={self.sdd}, sid={self.sid}")
        if min(spacing) <= 0:
            raise ValueError(f"pixel_spacing must be positive mm, got {self.pixel_spacing!r}")
        if not 0 < float(self.sid) < float(self.sdd):
            raise ValueError(f"need 0 < sid < sdd (source-isocentre < source-detector), got sid={self.sid}, sdd={self.sdd}")
        object.__setattr__(self, "detector_shape", shape)
        object.__setattr__(self, "pixel_spacing", spacing)
        object.__setattr__(self, "principal_point", pp)
        object.__setattr__(self, "sdd", float(self.sdd))
        object.__setattr__(self, "sid", float(self.sid))

    def frame(self, pose: Pose, isocenter: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """World source (3,), detector centre pixel origin (3,), column and row unit vectors (3,) for a pose."""
        r = pose.rotation_matrix()
        iso = np.asarray(isocenter, dtype=float) + np.asarray(pose.translation)
        if iso.shape != (3,) or not np.isfinite(iso).all():
            raise ValueError(f"isocenter must be a finite world point (x, y, z) in mm, got {np.asarray(isocenter).tolist()}")
        beam = r @ _AP_SOURCE_DIR
        col, row = r @ _AP_COL_DIR, r @ _AP_ROW_DIR
        # flipped in the detector frame itself, not in a picture: the stored DRR, its affine, projected labels and
        # DRRs rendered on the fly all hang like the film of that view (PA like AP, laterals from the detector side)
        if pose.view in VIEWS_SEEN_FROM_DETECTOR:
            col = -col
        source = iso + self.sid * beam
        h, w = self.detector_shape
        dr, dc = self.pixel_spacing
        centre = iso - (self.sdd - self.sid) * beam + self.principal_point[0] * row + self.principal_point[1] * col
        origin = centre - (h - 1) / 2 * dr * row - (w - 1) / 2 * dc * col  # centre of pixel (0, 0)
        return source, origin, col, row

    def pixel_centres(self, pose: Pose, isocenter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World source ``(3,)`` and detector pixel centres ``(H, W, 3)`` (float64, mm)."""
        source, origin, col, row = self.frame(pose, isocenter)
        h, w = self.detector_shape
        dr, dc = self.pixel_spacing
        rr = (np.arange(h) * dr)[:, None, None] * row
        cc = (np.arange(w) * dc)[None, :, None] * col
        return source, origin + rr + cc


def detector_affine(
    view: str | Pose | Mapping = "AP",
    detector_shape: Sequence[int] | int = (256, 256),
    pixel_spacing: Sequence[float] | float = 1.5625,
    sdd: float = 1020.0,
    sid: float = 850.0,
    isocenter: Sequence[float] = (0.0, 0.0, 0.0),
    principal_point: Sequence[float] | float = (0.0, 0.0),
    at_isocenter: bool = False,
) -> np.ndarray:
    """4x4 affine mapping a DRR pixel ``(row, col, 0, 1)`` to its world position (mm, RAS+) on the detector.

    Its first two column norms are the detector pixel spacing (or, with ``at_isocenter=True``, the spacing demagnified
    to the isocentre plane, ``spacing * sid / sdd``, which is the size of a pixel in the patient), so a NIfTI of the DRR
    saved with it carries the right pixel size. The third column is the unit beam direction (source -> detector).
    """
    geom = ConeBeam(detector_shape, pixel_spacing, sdd, sid, principal_point)
    pose = as_pose(view)
    source, origin, col, row = geom.frame(pose, np.asarray(isocenter, dtype=float))
    scale = sid / sdd if at_isocenter else 1.0
    dr, dc = geom.pixel_spacing
    if at_isocenter:  # same ray through the pixel, placed on the plane through the isocentre
        origin = source + (origin - source) * scale
    beam = -(pose.rotation_matrix() @ _AP_SOURCE_DIR)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = row * dr * scale, col * dc * scale, beam, origin
    return affine
