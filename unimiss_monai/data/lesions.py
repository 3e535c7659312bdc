"""Simulated findings with exact labels: lung nodules/masses inserted into a CT, and an enlarged heart.

- **Nodule / mass**: an ellipsoid of soft-tissue attenuation (about 40 HU, with texture noise) of random size,
  elongation and orientation, centred on a random lung voxel, kept where at least ``min_inside`` of it lies in the
  lung, and blended over one voxel at its border (partial volume), so it has no unnaturally sharp edge. The radiology
  convention (Fleischner glossary) calls a rounded opacity up to 30 mm a nodule and a larger one a mass.
- **Cardiomegaly-like heart enlargement**: the heart region is magnified about its centroid, more in-plane (left-right,
  antero-posterior) than along the body axis, by resampling the CT's own heart intensities (trilinear), so the heart
  keeps its texture. The enlarged heart replaces lung and soft tissue only, never bone. On a frontal projection this
  widens the cardiac silhouette by about the in-plane factor, which raises the cardiothoracic ratio the way
  cardiomegaly does; it does not model chamber-specific shapes or the displaced vessels of real disease.

All functions work on (X, Y, Z) arrays in HU with the voxel ``spacing`` in mm, return new arrays (inputs unchanged),
and take a ``numpy.random.Generator`` so a seed reproduces a data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Lesion", "ellipsoid_weights", "insert_lesion", "enlarge_region", "NODULE_MAX_MM"]

NODULE_MAX_MM = 30.0  # a nodule is at most 30 mm across; above that, a mass
SOFT_TISSUE_HU = 40.0


@dataclass(frozen=True)
class Lesion:
    """An inserted lesion: ``center`` (voxel index), ``diameter_mm`` (largest axis), ``semi_axes_mm``, ``voxels``."""

    center: tuple[int, int, int]
    diameter_mm: float
    semi_axes_mm: tuple[float, float, float]
    voxels: int


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def ellipsoid_weights(
    shape: Sequence[int], center: Sequence[float], semi_axes_mm: Sequence[float], spacing: Sequence[float],
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Partial-volume occupancy in [0, 1] of an ellipsoid on a voxel grid.

    Args:
        shape: grid shape (X, Y, Z). center: ellipsoid centre in voxel coordinates.
        semi_axes_mm: the three semi-axes in mm. spacing: voxel size in mm.
        rotation: 3x3 rotation of the ellipsoid's axes in world (mm) space. Defaults to axis-aligned.

    Returns:
        (X, Y, Z) float32: 1 inside, 0 outside, a linear ramp one voxel wide across the surface.
    """
    semi = np.asarray(semi_axes_mm, dtype=np.float64)
    if semi.shape != (3,) or (semi <= 0).any():
        raise ValueError(f"semi_axes_mm must be three positive lengths, got {semi_axes_mm}")
    grid = np.indices(tuple(shape), dtype=np.float32).reshape(3, -1)
    offset_mm = (grid - np.asarray(center, np.float32)[:, None]) * np.asarray(spacing, np.float32)[:, None]
    if rotation is not None:
        offset_mm = rotation.T.astype(np.float32) @ offset_mm
    rho = np.sqrt((((offset_mm / semi[:, None].astype(np.float32)) ** 2).sum(0)))
    # distance to the surface along the radius, in voxels: (1 - rho) * semi-axis / voxel size (smallest of each)
    ramp_vox = (1.0 - rho) * float(semi.min() / min(spacing))
    return np.clip(ramp_vox + 0.5, 0.0, 1.0).reshape(tuple(shape)).astype(np.float32)


def insert_lesion(
    hu: np.ndarray, lung_mask: np.ndarray, spacing: Sequence[float], rng: np.random.Generator,
    diameter_mm: tuple[float, float] = (6.0, NODULE_MAX_MM), lesion_hu: float = SOFT_TISSUE_HU,
    texture_hu: float = 15.0, min_inside: float = 0.85, max_tries: int = 50, center_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, Lesion]:
    """Insert one soft-tissue ellipsoid inside the lung.

    Args:
        hu: (X, Y, Z) CT in HU. lung_mask: (X, Y, Z) bool, where the lesion may be centred.
        spacing: voxel size (mm) of the three axes. rng: random generator.
        diameter_mm: range of the lesion's largest diameter; the other two axes are 65-100 % of it.
        lesion_hu: mean attenuation of the lesion. texture_hu: standard deviation of its voxel noise.
        min_inside: smallest fraction of the lesion volume that must lie in ``lung_mask``.
        max_tries: random placements tried before giving up.
        center_mask: (X, Y, Z) bool, where the lesion's centre may be drawn (within ``lung_mask``); None: anywhere in
            ``lung_mask``.

    Returns:
        ``(hu_out, lesion_mask, lesion)``: the new CT (float32), the (X, Y, Z) bool lesion mask (occupancy >= 0.5) and
        a :class:`Lesion` record.

    Raises:
        ValueError: shapes differ, the lung mask is empty, or no placement fits ``min_inside``.
    """
    hu = np.asarray(hu)
    lung_mask = np.asarray(lung_mask, dtype=bool)
    if hu.ndim != 3 or hu.shape != lung_mask.shape:
        raise ValueError(f"insert_lesion: hu {hu.shape} and lung_mask {lung_mask.shape} must be the same 3D shape")
    allowed = lung_mask if center_mask is None else lung_mask & np.asarray(center_mask, dtype=bool)
    candidates = np.argwhere(allowed)
    if len(candidates) == 0:
        raise ValueError("insert_lesion: the lung mask is empty" + ("" if center_mask is None else " inside center_mask")
                         + "; give a crop or volume that contains lung")
    spacing = np.asarray(spacing, dtype=np.float64)
    lo, hi = diameter_mm
    for _ in range(max_tries):
        diameter = float(rng.uniform(lo, hi))
        semi = diameter / 2.0 * np.r_[1.0, rng.uniform(0.65, 1.0, size=2)]
        rotation = _random_rotation(rng)
        center = candidates[rng.integers(len(candidates))]
        # work in the lesion's bounding box only: cheap on a full CT
        reach = np.ceil(semi.max() / spacing).astype(int) + 2
        box_lo = np.maximum(center - reach, 0)
        box_hi = np.minimum(center + reach + 1, hu.shape)
        box = tuple(slice(a, b) for a, b in zip(box_lo, box_hi))
        weights = ellipsoid_weights(box_hi - box_lo, center - box_lo, semi, spacing, rotation)
        total = weights.sum()
        if total <= 0 or (weights * lung_mask[box]).sum() < min_inside * total:
            continue
        out = hu.astype(np.float32, copy=True)
        texture = rng.normal(lesion_hu, texture_hu, size=weights.shape).astype(np.float32)
        region = out[box]
        # only lung-like (air-filled) voxels take the lesion: vessels, pleura and bone around it stay as they were
        weights = weights * (region < -300)
        out[box] = region * (1.0 - weights) + texture * weights
        mask = np.zeros(hu.shape, dtype=bool)
        mask[box] = weights >= 0.5
        return out, mask, Lesion(tuple(int(c) for c in center), diameter, tuple(float(s) for s in semi), int(mask.sum()))
    raise ValueError(
        f"insert_lesion: no {lo:g}-{hi:g} mm lesion fits the lung mask ({len(candidates)} voxels) in {max_tries} tries; "
        "use a larger lung region or smaller diameter_mm"
    )


def enlarge_region(
    hu: np.ndarray, labels: np.ndarray, region_values: Sequence[int],
    scale: tuple[float, float, float] = (1.25, 1.25, 1.08), replaceable: np.ndarray | None = None,
    bone_hu: float = 250.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Magnify a labelled region (e.g. the heart) about its centroid, resampling the CT's own intensities.

    Args:
        hu: (X, Y, Z) CT in HU. labels: (X, Y, Z) integer label map.
        region_values: label values that form the region (e.g. the TotalSegmentator heart label).
        scale: magnification along the three voxel axes (>= 1), about the region's centroid (per axis, so the voxel
            spacing does not enter: the centroid in voxels is the centroid in mm).
        replaceable: (X, Y, Z) bool, voxels the enlarged region may overwrite. Defaults to every voxel below
            ``bone_hu`` (lung, fat, soft tissue), so ribs, sternum and spine are never painted over.
        bone_hu: HU above which a voxel counts as bone for the default ``replaceable``.

    Returns:
        ``(hu_out, region_mask)``: the new CT (float32) and the (X, Y, Z) bool enlarged region.
    """
    hu = np.asarray(hu, dtype=np.float32)
    labels = np.asarray(labels)
    if hu.ndim != 3 or hu.shape != labels.shape:
        raise ValueError(f"enlarge_region: hu {hu.shape} and labels {labels.shape} must be the same 3D shape")
    scale_arr = np.asarray(scale, dtype=np.float64)
    if scale_arr.shape != (3,) or (scale_arr < 1).any():
        raise ValueError(f"enlarge_region: scale must be three factors >= 1, got {scale}")
    region = np.isin(labels, list(region_values))
    if not region.any():
        raise ValueError(f"enlarge_region: no voxel has a label in {list(region_values)}; check the label map")
    centroid = np.argwhere(region).mean(0)
    idx = np.argwhere(region)
    half = np.ceil(np.maximum(centroid - idx.min(0), idx.max(0) - centroid) * scale_arr).astype(int) + 2
    # a box symmetric about the centroid (clipped to the volume), so magnification maps the box onto itself
    lo = np.floor(centroid).astype(int) - half
    hi = np.floor(centroid).astype(int) + half + 1
    pad_lo, pad_hi = np.maximum(-lo, 0), np.maximum(hi - np.asarray(hu.shape), 0)
    box = tuple(slice(a, b) for a, b in zip(np.maximum(lo, 0), np.minimum(hi, hu.shape)))
    pad = [(int(a), int(b)) for a, b in zip(pad_lo, pad_hi)]
    hu_box = np.pad(hu[box], pad, mode="edge")
    region_box = np.pad(region[box], pad).astype(np.float32)
    offset = centroid - np.floor(centroid)  # sub-voxel position of the centroid in the box's centre voxel
    # voxel q of the output reads the input at c + (q - c) / s: one affine grid_sample for image and mask
    shape = np.asarray(hu_box.shape)
    axes = [np.arange(n, dtype=np.float64) for n in shape]
    centre = half + offset
    src = [centre[d] + (axes[d] - centre[d]) / scale_arr[d] for d in range(3)]
    norm = [torch.as_tensor(2.0 * s / (n - 1) - 1.0, dtype=torch.float32) for s, n in zip(src, shape)]
    gx, gy, gz = torch.meshgrid(*norm, indexing="ij")
    grid = torch.stack([gz, gy, gx], dim=-1)[None]  # grid_sample wants (x=W, y=H, z=D) = (Z, Y, X) axes
    stacked = torch.from_numpy(np.stack([hu_box, region_box]))[None]
    warped = torch.nn.functional.grid_sample(stacked, grid, mode="bilinear", align_corners=True)[0].numpy()
    new_region = warped[1] >= 0.5
    crop = tuple(slice(a, n - b) for (a, b), n in zip(pad, shape))
    new_region, warped_hu = new_region[crop], warped[0][crop]
    allowed = (hu[box] < bone_hu) if replaceable is None else np.asarray(replaceable, dtype=bool)[box]
    write = new_region & (allowed | region[box])
    out = hu.copy()
    out[box] = np.where(write, warped_hu, hu[box])
    mask = np.zeros(hu.shape, dtype=bool)
    mask[box] = write
    return out, mask
