"""A CT volume prepared once for rendering many views: attenuation values, RAS+ affine, voxel-space helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from unimiss_monai.drr.attenuation import MU_WATER_70KEV, hu_to_mu
from unimiss_monai.drr.geometry import ConeBeam, Pose

__all__ = ["PreparedVolume", "prepare_volume", "as_affine", "volume_affine", "volume_center"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def as_affine(affine, affine_space: str = "RAS") -> np.ndarray:
    """A float64 4x4 RAS+ affine from a 4x4 array/tensor (``affine_space="LPS"`` converts a DICOM/ITK affine)."""
    if affine is None:
        raise ValueError("affine is required with an array volume: pass the 4x4 voxel-to-world matrix (e.g. img.affine)")
    a = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
    a = a.astype(np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {a.shape}")
    if not np.isfinite(a).all() or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError(f"affine must be finite and invertible, got\n{a}")
    space = affine_space.upper()
    if space not in ("RAS", "LPS"):
        raise ValueError(f"affine_space must be 'RAS' (NIfTI) or 'LPS' (DICOM/ITK), got {affine_space!r}")
    return _LPS_TO_RAS @ a if space == "LPS" else a


def volume_affine(volume, affine=None, affine_space: str | None = None) -> np.ndarray:
    """The float64 RAS+ affine of ``volume``: ``affine`` or, when None, the volume's own (a MetaTensor's ``.affine``).

    ``affine_space`` is the world of that affine, ``"RAS"`` (NIfTI) or ``"LPS"`` (DICOM/ITK). None reads a
    MetaTensor's own affine in the space its metadata names (``meta["space"]``: MONAI's readers write ``"LPS"`` when
    they leave an ITK/DICOM affine unconverted), and any other affine as RAS.
    """
    if affine is None and hasattr(volume, "affine"):
        affine = volume.affine
        if affine_space is None:  # an LPS affine read as RAS would mirror the DRR left-right and front-back
            affine_space = (getattr(volume, "meta", None) or {}).get("space")
    return as_affine(affine, "RAS" if affine_space is None else str(affine_space))


def volume_center(shape, affine: np.ndarray) -> np.ndarray:
    """World position (mm) of the volume centre, ``affine @ ((shape - 1) / 2)``."""
    return (affine @ np.append((np.asarray(shape[-3:], dtype=float) - 1) / 2, 1.0))[:3]


@dataclass
class PreparedVolume:
    """Attenuation volume (1/mm) in ``(X, Y, Z)`` voxel order with its RAS+ affine, ready for many views.

    ``values`` is a float32 numpy array (CPU kernels) in any memory order (C, Fortran, a transpose or flip of
    either; :mod:`.layout`), or a torch tensor (reference path: other devices, autograd). Build it with
    :func:`prepare_volume`; reuse it across calls to ``render`` so the HU conversion and checks run once per CT.
    ``occupancy``: the block map of ``values`` in their memory order (:mod:`.empty_space`) that lets the Siddon walk
    skip blocks of zeros; None walks every ray whole. ``prepare_volume`` builds it while converting and makes the
    converted array read-only, since the map is only true of the values it was built from.
    """

    values: np.ndarray | torch.Tensor
    affine: np.ndarray
    inverse: np.ndarray = field(init=False, repr=False)
    occupancy: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self.inverse = np.linalg.inv(self.affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.values.shape)  # type: ignore[return-value]

    @property
    def center(self) -> np.ndarray:
        return volume_center(self.shape, self.affine)

    def rays(self, geometry: ConeBeam, pose: Pose, isocenter=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rays of a pose in voxel-index coordinates: source ``(3,)``, pixel points ``(H, W, 3)``, lengths ``(H, W)`` mm.

        Raises ValueError when the source lies inside the volume (no valid cone-beam projection).
        """
        iso = self.center if isocenter is None else np.asarray(isocenter, dtype=float)
        source, pixels = geometry.pixel_centres(pose, iso)
        lengths = np.linalg.norm(pixels - source, axis=-1)
        lin, off = self.inverse[:3, :3], self.inverse[:3, 3]
        src_idx = lin @ source + off
        self._check_source(src_idx, source, geometry, pose)
        return src_idx, pixels @ lin.T + off, lengths

    def detector_frame(self, geometry: ConeBeam, pose: Pose, isocenter=None) -> tuple[np.ndarray, np.ndarray]:
        """The view's rays in closed form: ``(frame, world)``, each ``(4, 3)`` float64 with rows source, centre of
        pixel (0, 0), step per detector row and step per detector column; ``frame`` in voxel-index coordinates,
        ``world`` in mm. Pixel ``(r, c)`` lies at ``row1 + r * row2 + c * row3``: the same rays as :meth:`rays`.
        """
        iso = self.center if isocenter is None else np.asarray(isocenter, dtype=float)
        source, origin, col, row = geometry.frame(pose, iso)
        dr, dc = geometry.pixel_spacing
        world = np.stack([source, origin, dr * row, dc * col])
        lin, off = self.inverse[:3, :3], self.inverse[:3, 3]
        frame = world @ lin.T
        frame[:2] += off  # points move with the offset, steps do not
        self._check_source(frame[0], source, geometry, pose)
        return np.ascontiguousarray(frame), world

    def _check_source(self, src_idx: np.ndarray, source: np.ndarray, geometry: ConeBeam, pose: Pose) -> None:
        if np.all(src_idx >= -0.5) and np.all(src_idx <= np.asarray(self.shape) - 0.5):
            raise ValueError(
                f"X-ray source at {np.round(source, 1).tolist()} mm ({pose.view}, sid={geometry.sid} mm) lies inside "
                f"the volume (shape {self.shape}); increase sid/sdd or move the isocenter"
            )


def prepare_volume(
    volume,
    affine=None,
    volume_unit: str = "hu",
    mu_water: float = MU_WATER_70KEV,
    bone_slope: float = 1.0,
    affine_space: str | None = None,
    device: str | torch.device | None = None,
) -> PreparedVolume:
    """Check a CT once and convert it to attenuation for rendering.

    Args:
        volume: ``(X, Y, Z)`` numpy array or torch tensor (a MetaTensor carries its affine), in NIfTI voxel order;
            a NaN or Inf voxel raises ``ValueError``.
        affine: 4x4 voxel-to-world matrix; taken from ``volume.affine`` when None.
        volume_unit: ``"hu"`` (Hounsfield units, converted with :func:`hu_to_mu`) or ``"mu"`` (already 1/mm; a label
            mask of ones gives thickness in mm). A float32 ``"mu"`` array is used as it is, without a copy: changing
            it later changes what the prepared volume renders. Any other input is converted into a new array, which
            is read-only (prepare the changed volume again to render it) and comes with a map of its empty blocks.
        mu_water, bone_slope: HU -> attenuation model.
        affine_space: ``"RAS"`` (NIfTI, MONAI default) or ``"LPS"`` (DICOM/ITK); None: a MetaTensor's own affine in
            the space of its ``meta["space"]``, any other affine as RAS (:func:`volume_affine`).
        device: None or ``"cpu"`` keeps numpy for the compiled kernels unless ``volume`` requires grad; another device
            (``"cuda"``) keeps a torch tensor there, a numpy ``volume`` included, for the PyTorch path.
    """
    aff = volume_affine(volume, affine, affine_space)
    if volume_unit not in ("hu", "mu"):
        raise ValueError(f"volume_unit must be 'hu' or 'mu', got {volume_unit!r}")
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (X, Y, Z), got shape {tuple(volume.shape)}; batch with render(...)")
    if _on_torch(volume, device):
        # numpy: a contiguous copy first (torch takes no negative strides, and a flipped view of a CT has them)
        vol = volume if isinstance(volume, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(volume))
        vol = vol.as_subclass(torch.Tensor)
        if device is not None:
            vol = vol.to(device)
        vol = vol.float() if not vol.is_floating_point() else vol
        bad = ~torch.isfinite(vol.detach())
        if bool(bad.any()):
            raise ValueError(_non_finite_message(int(bad.sum()), int(torch.isnan(vol.detach()).sum())))
        mu = hu_to_mu(vol, mu_water, bone_slope) if volume_unit == "hu" else vol
        return PreparedVolume(mu, aff)
    arr = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    mu, occupancy = _attenuation(arr, volume_unit == "hu", float(mu_water), float(bone_slope))
    return PreparedVolume(mu, aff, occupancy)


def _on_torch(volume, device) -> bool:
    """Whether a volume is prepared as a torch tensor (the PyTorch path) rather than for the compiled CPU kernels: a
    volume that needs gradients, or one bound for (or, with no ``device`` given, already on) another device than
    the CPU. A numpy volume asked onto a GPU goes there too, not through the CPU kernels."""
    if device is not None and torch.device(device).type != "cpu":
        return True
    return isinstance(volume, torch.Tensor) and (volume.requires_grad or (device is None and volume.device.type != "cpu"))


def _attenuation(arr: np.ndarray, convert: bool, mu_water: float, bone_slope: float):
    """Float32 attenuation ``(X, Y, Z)`` of a numpy volume in one pass, in the volume's own memory order, and its block
    map (:mod:`.empty_space`; None for an array used as it is).

    A volume whose elements fill one block of memory (C or Fortran order, any transpose or flip of one) is read as it
    lies and the result shares its layout, so reordering costs nothing here or in the kernels (see :mod:`.layout`);
    any other strided view is read in place and written in C order. Float32 attenuation (``volume_unit="mu"``) is
    only checked for NaN and Inf and used as it is, without a copy. Non-finite voxels are refused: the rendering
    kernels assume finite values (fast-math), and an Inf voxel would make every ray through it Inf or NaN.
    """
    from unimiss_monai.drr.empty_space import block_map, run_grid
    from unimiss_monai.drr.layout import from_memory_order, memory_layout
    from unimiss_monai.drr.prepare_kernels import hu_to_mu_kernel, nonfinite_count_kernel

    if arr.dtype.kind not in "biuf":
        raise ValueError(f"volume must hold numbers, got dtype {arr.dtype}; pass HU (or attenuation) values")
    layout = memory_layout(arr)
    if not convert and arr.dtype == np.float32 and layout is not None:
        n_bad = nonfinite_count_kernel(layout.array)
        mu, occupancy = arr, None
    else:
        src = arr if layout is None else layout.array
        out = np.empty(src.shape, np.float32)
        runs = np.zeros(run_grid(out.shape), np.uint8)
        n_bad = hu_to_mu_kernel(src, mu_water, bone_slope, convert, out, out.view(np.uint32), runs)
        occupancy = block_map(runs)
        out.flags.writeable = False  # before the view below, which inherits it: the map describes these values
        if layout is None:  # written in C order; the kernels take size-1 axes first (:func:`.layout.memory_layout`)
            mu, occupancy = out, np.ascontiguousarray(occupancy.transpose(memory_layout(out).perm))
        else:
            mu = from_memory_order(out, layout.perm, layout.flips)
    if n_bad:  # counted apart only here, on the way to the error
        raise ValueError(_non_finite_message(n_bad, int(np.isnan(arr).sum()) if arr.dtype.kind == "f" else 0))
    return mu, occupancy


def _non_finite_message(n_bad: int, n_nan: int) -> str:
    kind = "NaN" if n_nan == n_bad else "non-finite (NaN or Inf)"
    return f"volume has {n_bad} {kind} voxels; fill them (e.g. -1000 HU) before rendering a DRR"
