"""A synthetic chest CT phantom in Hounsfield units with a label map, for tests and as the stand-in for the real CT.

The anatomy is defined in world (RAS, mm) coordinates relative to the centre of the field of view, and sampled at the
voxel centres given by the affine; so two phantoms that cover the same world box but store it in different voxel orders
or orientations describe the same body, which is what orientation tests need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PHANTOM_LABELS", "PHANTOM_HU", "CTPhantom", "make_ct_phantom", "phantom_affine"]

# label value -> structure name (0 is background / air)
PHANTOM_LABELS: dict[int, str] = {1: "body", 2: "lung_left", 3: "lung_right", 4: "heart", 5: "spine", 6: "ribs"}
# nominal HU of each label (body: soft tissue, bone: a cancellous/cortical average)
PHANTOM_HU: dict[str, float] = {
    "air": -1000.0, "body": 40.0, "lung_left": -850.0, "lung_right": -850.0, "heart": 50.0, "spine": 700.0, "ribs": 900.0,
}


@dataclass(frozen=True)
class CTPhantom:
    """A phantom CT: ``hu`` (X, Y, Z) float32 HU, ``labels`` (X, Y, Z) uint8 (see :data:`PHANTOM_LABELS`), 4x4 RAS ``affine``."""

    hu: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    label_names: dict[int, str]


def phantom_affine(spacing: tuple[float, float, float] = (5.0, 5.0, 5.0), shape: tuple[int, int, int] = (64, 64, 48),
                   axcodes: str = "RAS") -> np.ndarray:
    """4x4 affine of a volume of ``shape`` voxels of ``spacing`` mm whose voxel axes point along ``axcodes``
    (e.g. ``"LPS"``, ``"LAS"``, ``"ASR"``), centred on the world origin."""
    codes = axcodes.upper()
    pairs = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}
    if len(codes) != 3 or any(c not in pairs for c in codes) or len({pairs[c][0] for c in codes}) != 3:
        raise ValueError(f"axcodes {axcodes!r} must name each world axis once, e.g. 'RAS', 'LPS' or 'ASR'")
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for voxel_axis, (code, step) in enumerate(zip(codes, spacing)):
        world_axis, sign = pairs[code]
        affine[world_axis, voxel_axis] = sign * float(step)
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape, dtype=float) - 1.0) / 2.0)
    return affine


def make_ct_phantom(shape: tuple[int, int, int] = (64, 64, 48), spacing: tuple[float, float, float] = (5.0, 5.0, 5.0),
                    affine: np.ndarray | None = None, seed: int = 0, noise_hu: float = 10.0) -> CTPhantom:
    """Generate a chest phantom: torso, two lungs, heart, spine and ribs, in HU, with its label map.

    Args:
        shape: voxels along the three voxel axes.
        spacing: voxel size in mm, used only when ``affine`` is None (RAS orientation, centred on the origin).
        affine: 4x4 voxel-to-world (RAS, mm) matrix; any orientation. Defaults to :func:`phantom_affine`.
        seed: seed of the acquisition noise; the same seed gives the same volume.
        noise_hu: standard deviation of the Gaussian noise added to the HU values (0 for a noiseless phantom).

    Returns:
        :class:`CTPhantom` with ``hu`` (X, Y, Z) float32, ``labels`` (X, Y, Z) uint8 and the affine.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"phantom shape {shape} must be three sizes >= 2")
    affine = phantom_affine(spacing, shape) if affine is None else np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(f"phantom affine must be 4x4, got {affine.shape}")
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in shape], indexing="ij")).reshape(3, -1)
    world_corners = affine[:3, :3] @ corners + affine[:3, 3:]
    centre = world_corners.mean(axis=1)
    half = np.maximum((world_corners.max(axis=1) - world_corners.min(axis=1)) / 2.0, 1e-6)

    # normalised world coordinates of every voxel centre: u in [-1, 1] across the field of view along R, A, S
    index = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3].astype(np.float32) @ index + affine[:3, 3:].astype(np.float32)
    r, a, s = ((world - centre[:, None].astype(np.float32)) / half[:, None].astype(np.float32)).reshape(3, *shape)

    labels = np.zeros(shape, dtype=np.uint8)
    body = (r / 0.85) ** 2 + ((a + 0.05) / 0.6) ** 2 <= 1.0
    labels[body] = 1
    # the patient's left is -R in RAS; lungs sit either side of the heart, above the diaphragm (s > -0.75)
    for name, side in (("lung_left", -1.0), ("lung_right", 1.0)):
        lung = ((r - side * 0.38) / 0.28) ** 2 + ((a - 0.0) / 0.42) ** 2 + ((s - 0.1) / 0.85) ** 2 <= 1.0
        labels[lung & body] = _value(name)
    heart = ((r + 0.1) / 0.22) ** 2 + ((a - 0.18) / 0.25) ** 2 + ((s + 0.25) / 0.35) ** 2 <= 1.0
    labels[heart & body] = _value("heart")
    spine = (r / 0.09) ** 2 + ((a + 0.45) / 0.1) ** 2 <= 1.0
    labels[spine] = _value("spine")
    # ribs: thin elliptical shells inside the body wall, one every ~1/5 of the height
    shell = (r / 0.78) ** 2 + ((a + 0.05) / 0.53) ** 2
    rib_band = np.abs(((s + 1.0) * 5.0) % 2.0 - 1.0) < 0.25
    ribs = (shell >= 0.86) & (shell <= 1.0) & rib_band & (a > -0.5) & ~(labels == _value("spine"))
    labels[ribs] = _value("ribs")

    lut = np.full(len(PHANTOM_LABELS) + 1, PHANTOM_HU["air"], dtype=np.float32)
    for value, name in PHANTOM_LABELS.items():
        lut[value] = PHANTOM_HU[name]
    hu = lut[labels]
    if noise_hu > 0:
        hu += np.random.default_rng(seed).normal(0.0, noise_hu, size=shape).astype(np.float32)
    np.clip(hu, -1024.0, 3071.0, out=hu)
    return CTPhantom(hu=hu, labels=labels, affine=affine, label_names=dict(PHANTOM_LABELS))


def _value(name: str) -> int:
    return next(v for v, n in PHANTOM_LABELS.items() if n == name)
