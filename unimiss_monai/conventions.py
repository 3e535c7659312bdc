"""One geometry for the whole package: how a CT sits in a network's tensor and how every 2D image is displayed.

Every bundle, transform, writer and picture follows these few definitions, so a backbone pretrained on one stage meets
the same anatomy in the next, and a picture shows what the tensor holds.

**2D images** (radiographs, DRRs, axial slices) are ``(C, X, Y)`` — MONAI's reader order: ``X`` runs along the image
columns (left to right on screen), ``Y`` along the rows (top to bottom). A PNG of a ``(X, Y)`` array is its transpose
(rows x columns). Radiographs are stored and shown as their films are hung, head up:

- frontal views (``AP``, ``PA``) as if facing the patient: the patient's right on the image left, for both (a PA film
  is seen from the detector side, an AP film from the source side);
- lateral views as seen from the side against the detector (:data:`VIEWS_SEEN_FROM_DETECTOR`): the standard left
  lateral (``LAT_LEFT``) with the anterior side on the image left, a right lateral (``LAT_RIGHT``) with it on the right.

Real radiographs are read in their stored pixel order, the way their films were hung when exported, and DRRs are
rendered straight into this hanging (:mod:`unimiss_monai.drr.geometry` turns the detector's column axis), so a
pretraining batch meets real and simulated films of one view the same way round and no picture flips an image. A picture of a 2D
image whose pixels are not square (a resized slab DRR) shows its true proportions, from the pixel spacing its NIfTI
affine records (:func:`display_shape`).

**CT volumes** are reoriented to :data:`CT_AXCODES` (``LPS``: +x to the patient's left, +y posterior, +z superior)
and put depth-first by :data:`CT_TO_NETWORK`: ``(C, X, Y, Z)`` -> ``(C, Z, X, Y)``. Each axial slice ``[:, z]`` is then
a 2D image in the convention above — the patient's right on the image left, anterior at the top, as a radiologist
reads an axial CT — and ``z`` runs from inferior to superior.

Pictures of volumes (:func:`display_panels`) show axial, coronal and sagittal planes, each with the superior side
up and, where a voxel spacing is given, in true proportions.

**Structures** keep one colour in every picture and legend (:func:`structure_colour`): paired structures share a hue
family (left darker than right), so a reader learns the colours once: lungs blue, heart red, liver brown, and so on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = [
    "CT_AXCODES",
    "CT_AXIS_LABELS",
    "CT_TO_NETWORK",
    "NETWORK_TO_CT",
    "STRUCTURE_COLOURS",
    "VIEWS_SEEN_FROM_DETECTOR",
    "display_2d",
    "display_shape",
    "display_panels",
    "panel_points",
    "grey_levels",
    "network_spacing",
    "structure_colour",
    "voxel_spacing",
]

#: orientation code every CT is brought to before it enters a network (MONAI ``Orientationd(axcodes=...)``)
CT_AXCODES = "LPS"
#: what the letters of :data:`CT_AXCODES` mean, each axis as (low end, high end): nibabel's own labels, passed
#: explicitly because MONAI announces that ``Orientation``'s default ``labels`` will change
CT_AXIS_LABELS: tuple[tuple[str, str], ...] = (("L", "R"), ("P", "A"), ("I", "S"))
#: ``Transposed(indices=...)`` from MONAI's channel-first ``(C, X, Y, Z)`` to the networks' ``(C, Z, X, Y)``
CT_TO_NETWORK: tuple[int, int, int, int] = (0, 3, 1, 2)
#: the inverse permutation, ``(C, Z, X, Y)`` -> ``(C, X, Y, Z)``
NETWORK_TO_CT: tuple[int, int, int, int] = tuple(int(i) for i in np.argsort(CT_TO_NETWORK))  # type: ignore[assignment]
#: radiograph views hung as seen from the detector side, i.e. mirrored left-right relative to the beam's-eye view
VIEWS_SEEN_FROM_DETECTOR = frozenset({"PA", "LAT_LEFT", "LAT_RIGHT"})


def display_2d(image: np.ndarray) -> np.ndarray:
    """A ``(X, Y)`` image (or ``(X, Y, channels)``) as rows x columns for a PNG or ``imshow``."""
    image = np.asarray(image)
    return np.swapaxes(image, 0, 1)


def grey_levels(image, window: Sequence[float] | None = None, percentiles: Sequence[float] = (1, 99)) -> np.ndarray:
    """An image's grey levels for a picture, float32 in ``[0, 1]``: scaled to ``window`` (e.g. a HU window) or, without
    one, to the ``percentiles`` of its finite values (radiographs and DRRs have no fixed unit). NaN shows as the low
    end, so one bad pixel does not blank the picture."""
    image = np.asarray(image, dtype=np.float32)
    finite = image[np.isfinite(image)]
    if window is not None:
        lo, hi = float(window[0]), float(window[1])
    elif finite.size:
        lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    else:
        lo, hi = 0.0, 1.0
    return np.clip((np.nan_to_num(image, nan=lo) - lo) / max(hi - lo, 1e-6), 0, 1)


def display_shape(shape: Sequence[int], pixel_spacing: Sequence[float] | float) -> tuple[int, int]:
    """``(rows, columns)`` of a picture of a ``(rows, columns)`` image with ``pixel_spacing`` ``(row, col)`` mm that
    shows its true proportions on square screen pixels: the physically longer side keeps the larger of the two pixel
    counts, so a picture is never bigger than its image's largest side. Raises ValueError for a spacing that is not
    positive and finite."""
    h, w = (int(n) for n in shape)
    dr, dc = (float(s) for s in np.broadcast_to(np.asarray(pixel_spacing, dtype=float), (2,)))
    if not (np.isfinite([dr, dc]).all() and dr > 0 and dc > 0):
        raise ValueError(f"pixel_spacing must be positive mm (row, col), got {pixel_spacing!r}")
    side = max(h * dr, w * dc) / max(h, w)  # mm per screen pixel
    return max(1, round(h * dr / side)), max(1, round(w * dc / side))


def voxel_spacing(affine, spatial_dims: int) -> tuple[float, ...]:
    """The step in mm along each of the first ``spatial_dims`` array axes of an image with this affine (``(d+1, d+1)``):
    the lengths of its columns over every world axis. MONAI's ``pixdim`` reads the top-left ``spatial_dims`` block
    only, which for a 2D image lying in 3D space drops the part of an axis that runs along z: a frontal DRR's rows
    (head to feet) came out 1 mm, or nearly 0, instead of its pixel spacing."""
    a = np.asarray(affine, dtype=np.float64)
    return tuple(float(s) for s in np.linalg.norm(a[:-1, :spatial_dims], axis=0))


def network_spacing(affine: np.ndarray | None) -> tuple[float, float, float] | None:
    """Voxel spacing in network order ``(Z, X, Y)`` from the affine of a CT that went through :data:`CT_TO_NETWORK`.

    MONAI's ``Transposed`` leaves the affine in the original ``(X, Y, Z)`` axis order, so the column norms are
    permuted here. Returns None without an affine.
    """
    if affine is None:
        return None
    xyz = voxel_spacing(affine, 3)
    return tuple(xyz[i - 1] for i in CT_TO_NETWORK[1:])  # type: ignore[return-value]


def display_panels(
    volume: np.ndarray, centre: Sequence[int] | None = None, spacing: Sequence[float] | None = None
) -> list[tuple[str, np.ndarray, float]]:
    """Axial, coronal and sagittal planes of a ``(Z, X, Y)`` network-order volume, ready for ``imshow``.

    Args:
        volume: ``(Z, X, Y)`` array (or ``(Z, X, Y, channels)``).
        centre: ``(z, x, y)`` voxel the planes go through. Defaults to the volume's centre.
        spacing: ``(Z, X, Y)`` voxel spacing (:func:`network_spacing`), for true proportions. Defaults to isotropic.

    Returns:
        ``[(name, rows x columns array, aspect), ...]`` for ``"axial"`` (patient's right on the left, anterior up),
        ``"coronal"`` (superior up, patient's right on the left) and ``"sagittal"`` (superior up, anterior on the
        left); ``aspect`` is the row/column pixel ratio for ``imshow(aspect=...)``.
    """
    volume = np.asarray(volume)
    z, x, y = (int(c) for c in (centre if centre is not None else [s // 2 for s in volume.shape[:3]]))
    sz, sx, sy = (float(s) for s in (spacing if spacing is not None else (1.0, 1.0, 1.0)))
    axial = np.swapaxes(volume[z], 0, 1)  # (X, Y) -> rows Y (anterior first), columns X (patient right first)
    coronal = volume[::-1, :, y]  # rows Z reversed (superior first), columns X
    sagittal = volume[::-1, x, :]  # rows Z reversed, columns Y (anterior first)
    return [("axial", axial, sy / sx), ("coronal", coronal, sz / sx), ("sagittal", sagittal, sz / sy)]


def panel_points(shape: Sequence[int], point: Sequence[int]) -> list[tuple[int, int]]:
    """Where the voxel ``point`` ``(z, x, y)`` of a ``(Z, X, Y)`` volume lies in each of its :func:`display_panels`
    through it, as ``(row, column)``: axial, coronal, sagittal, in that order (to mark it in the pictures)."""
    z, x, y = (int(c) for c in point)
    top = int(shape[0]) - 1 - z  # the planes through Z show superior first
    return [(y, x), (top, x), (top, y)]


#: structure name -> RGB (0-255); a structure not listed gets a colour derived from its name
STRUCTURE_COLOURS: dict[str, tuple[int, int, int]] = {
    "lung": (66, 146, 230),
    "lung_left": (31, 100, 200),
    "lung_right": (110, 190, 255),
    "heart": (230, 40, 50),
    "liver": (170, 100, 40),
    "spleen": (150, 60, 200),
    "kidney_left": (0, 150, 110),
    "kidney_right": (60, 210, 160),
    "kidneys": (30, 180, 135),
    "stomach": (255, 150, 30),
    "pancreas": (240, 220, 40),
    "aorta": (255, 60, 200),
    # green, not the white and grey they once were, which vanished on the bone of the radiographs they outline
    "clavicle_left": (70, 170, 0),
    "clavicle_right": (160, 240, 60),
    "spine": (250, 250, 130),
    "ribs": (255, 215, 160),
    "trachea": (0, 230, 230),
    "esophagus": (190, 130, 100),
}

# a fixed, colour-blind-considerate fallback cycle (Okabe-Ito, without black)
_FALLBACK = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
             (204, 121, 167)]


def structure_colour(name: str) -> tuple[int, int, int]:
    """The RGB colour (0-255) of structure ``name`` in every picture; a stable colour from the name's hash for
    structures not in :data:`STRUCTURE_COLOURS`."""
    if name in STRUCTURE_COLOURS:
        return STRUCTURE_COLOURS[name]
    digest = int(hashlib.sha1(name.encode()).hexdigest(), 16)  # stable across runs, unlike hash()
    return _FALLBACK[digest % len(_FALLBACK)]
