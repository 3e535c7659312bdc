"""Sample data set ``ct_classification``: 3D chest CT crops labelled ``normal``, ``nodule`` or ``mass``.

A proxy for the 3D COVID-CT fine-tuning task of UniMiSS+ with exact labels: crops of the real chest CT (in-plane
resolution halved to ~1.4 mm, 64 x 64 x 32 voxels ~ 90 x 90 x 80 mm, centred on a random lung voxel), into which a
simulated lesion (:mod:`unimiss_monai.data.lesions`) of 6-20 mm (``nodule``) or 32-50 mm (``mass``) is inserted, or
none (``normal``). Classes rotate through the cases, so every split holds every class.

Layout::

    ct_classification/datalist.json        {"class_names": [...], "multi_label": false,
                                             "training"|"validation"|"test": [{"image", "label"}, ...]}
    ct_classification/images/<name>.nii.gz  CT crop in HU (int16), with its world affine
    ct_classification/preview.png           mid slices of a few crops and their labels

``synthetic=True`` cuts the crops (32 x 32 x 16 voxels of 5 mm) from the phantom of :mod:`unimiss_monai.data.phantom`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unimiss_monai.data.lesions import insert_lesion
from unimiss_monai.data.writers import save_contact_sheet, save_json, save_nifti, staged_dir

__all__ = ["NAME", "CLASS_NAMES", "ChestCT", "load_chest_ct", "build"]


NAME = "ct_classification"
CLASS_NAMES = ["normal", "nodule", "mass"]
DIAMETER_MM = {"nodule": (6.0, 20.0), "mass": (32.0, 50.0)}
# (training, validation, test) crops; a multiple of the 3 classes each
REAL_COUNTS, SYNTHETIC_COUNTS = (48, 12, 12), (12, 6, 6)
REAL_CROP, SYNTHETIC_CROP = (64, 64, 32), (32, 32, 16)


@dataclass(frozen=True)
class ChestCT:
    """A chest CT for simulation: ``hu`` (X, Y, Z) float32, ``lung``/``heart`` (X, Y, Z) bool, ``labels`` int map."""

    hu: np.ndarray
    labels: np.ndarray
    lung: np.ndarray
    heart: np.ndarray
    heart_values: tuple[int, ...]
    affine: np.ndarray
    source: str

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


def load_chest_ct(synthetic: bool, in_plane_step: int = 2) -> ChestCT:
    """The real chest CT with its lung and heart masks (in-plane resolution divided by ``in_plane_step``), or the
    phantom when ``synthetic`` or when the real CT is not installed (with a warning)."""
    from unimiss_monai.data.locators import real_ct_or_fallback

    real = real_ct_or_fallback(synthetic, "the classification sample sets")
    if real is None:
        from unimiss_monai.data.phantom import make_ct_phantom

        ph = make_ct_phantom(shape=(64, 64, 48), spacing=(5.0, 5.0, 5.0), seed=0)
        heart = tuple(v for v, n in ph.label_names.items() if n == "heart")
        lung = np.isin(ph.labels, [v for v, n in ph.label_names.items() if n.startswith("lung")])
        return ChestCT(ph.hu, ph.labels, lung, np.isin(ph.labels, heart), heart, ph.affine, "synthetic")
    from unimiss_monai.data.ct_io import load_ct, load_label_map
    from unimiss_monai.data.locators import read_structure_names

    hu, affine = load_ct(real.image)
    labels = load_label_map(real.labels, hu.shape, affine)
    names = read_structure_names(real.structures)
    s = in_plane_step
    if s > 1:  # average s x s in-plane blocks: a cheaper volume with the same anatomy
        x, y = (hu.shape[0] // s) * s, (hu.shape[1] // s) * s
        hu = hu[:x, :y].reshape(x // s, s, y // s, s, -1).mean((1, 3), dtype=np.float32)
        labels = labels[:x:s, :y:s]
        affine = affine.copy()
        affine[:3, :2] *= s
        affine[:3, 3] += (affine[:3, 0] + affine[:3, 1]) * (s - 1) / (2 * s)  # new voxel centres
    heart = tuple(v for v, n in names.items() if n == "heart")
    lung = np.isin(labels, [v for v, n in names.items() if n.startswith("lung_")])
    return ChestCT(hu, labels, lung, np.isin(labels, heart), heart, affine, "real")


def _crop_affine(affine: np.ndarray, start: np.ndarray) -> np.ndarray:
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return out


def _random_crop(ct: ChestCT, size: tuple[int, int, int], rng: np.random.Generator) -> tuple[tuple[slice, ...], np.ndarray]:
    """A crop of ``size`` centred on a random lung voxel (shifted to stay inside the volume)."""
    lung_voxels = np.argwhere(ct.lung)
    centre = lung_voxels[rng.integers(len(lung_voxels))]
    start = np.clip(centre - np.asarray(size) // 2, 0, np.asarray(ct.hu.shape) - size)
    return tuple(slice(a, a + n) for a, n in zip(start, size)), start


def build(out_dir: Path, synthetic: bool = False, seed: int = 0) -> dict:
    """Write the data set under ``out_dir / "ct_classification"`` and return its manifest entry."""
    ct = load_chest_ct(synthetic)
    size, counts = (REAL_CROP, REAL_COUNTS) if ct.source == "real" else (SYNTHETIC_CROP, SYNTHETIC_COUNTS)
    with staged_dir(Path(out_dir) / NAME) as folder:
        rng = np.random.default_rng(seed)
        datalist: dict = {"class_names": CLASS_NAMES, "multi_label": False}
        previews, titles = [], []
        for split, count in zip(("training", "validation", "test"), counts):
            datalist[split] = []
            for i in range(count):
                label = CLASS_NAMES[i % len(CLASS_NAMES)]
                for _ in range(20):  # a crop with too little lung for a mass is re-drawn
                    box, start = _random_crop(ct, size, rng)
                    hu, lung, z = ct.hu[box], ct.lung[box], size[2] // 2
                    if label == "normal":
                        break
                    try:
                        hu, _, lesion = insert_lesion(hu, lung, ct.spacing, rng, diameter_mm=DIAMETER_MM[label], min_inside=0.7)
                        z = lesion.center[2]
                        break
                    except ValueError:
                        continue
                else:
                    raise RuntimeError(f"{NAME}: found no crop with room for a {label} in 20 tries")
                name = f"{split}_{i:03d}_{label}"
                save_nifti(np.round(hu).clip(-1024, 3071).astype(np.int16), _crop_affine(ct.affine, start), folder / "images" / f"{name}.nii.gz")
                datalist[split].append({"image": f"images/{name}.nii.gz", "label": label})
                if split == "test" and len(previews) < 6:
                    previews.append(np.rot90(hu[:, :, z]))
                    titles.append(label)
        save_json(datalist, folder / "datalist.json")
        save_contact_sheet(np.clip((np.stack(previews) + 1000) / 1400, 0, 1), titles, folder / "preview.png", title="axial slices (through the lesion)")
        return {"path": NAME, "datalist": f"{NAME}/datalist.json", "source": ct.source, "class_names": CLASS_NAMES,
                "cases": {k: len(datalist[k]) for k in ("training", "validation", "test")}}
