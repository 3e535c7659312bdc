"""Sample data set ``ct_classification``: 3D chest CT crops labelled ``normal``, ``nodule`` or ``mass``.

A proxy for the 3D COVID-CT fine-tuning task of UniMiSS+ with exact labels: crops of the real chest CT (in-plane
resolution halved to ~1.4 mm, 64 x 64 x 32 voxels ~ 90 x 90 x 80 mm, centred on a random lung voxel), into which a
simulated lesion (:mod:`unimiss_monai.data.lesions`) of 6-20 mm (``nodule``) or 32-50 mm (``mass``) is inserted, or
none (``normal``). The lesion's centre lies within :data:`CENTRE_MM` of the crop's centre, as in the second stage of a
nodule-detection pipeline, which classifies crops centred on candidate locations: the question is what lies at the
centre of the crop. (With the lesion anywhere in the crop, the strided MiT+ encoder learnt nothing that carried to
held-out crops at the small scale, while a max-pooling CNN did; see the CT classification bundle's docs.)

Two rules keep the proxy from being solved without seeing the lesion, and the test split unseen:

- **Matched locations.** Every crop location is used once per class (the ``normal`` crop and the two lesion crops of
  one location share their voxels outside the lesion), so where in the chest a crop lies says nothing about its label.
  With one random location per crop, a network could fit the training labels by anatomy alone and then score below
  chance on test crops near training crops of another class.
- **Held-out region.** An axial plane splits the lung voxels in half (:func:`split_plane`): training crops lie in the
  slices before it, validation and test crops in the slices after it, so no held-out crop shares a voxel with a
  training crop and the held-out crops show another level of the chest.

Layout::

    ct_classification/datalist.json        {"class_names": [...], "multi_label": false,
                                             "training"|"validation"|"test": [{"image", "label"}, ...]}
                                            names <split>_<location>_<label>: three per location
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

__all__ = ["NAME", "CLASS_NAMES", "CENTRE_MM", "ChestCT", "load_chest_ct", "split_plane", "centre_box", "build"]


NAME = "ct_classification"
CLASS_NAMES = ["normal", "nodule", "mass"]
DIAMETER_MM = {"nodule": (6.0, 20.0), "mass": (32.0, 50.0)}
# (training, validation, test) crops: three per location, one of each class
REAL_COUNTS, SYNTHETIC_COUNTS = (48, 12, 36), (12, 6, 6)
# largest distance (mm, per axis) of a lesion's centre from its crop's centre
CENTRE_MM = 6.0
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


def split_plane(lung: np.ndarray, depth: int) -> int:
    """The axial index ``z`` that splits the lung voxels in half, kept at least ``depth`` slices from both ends so a
    crop of that depth fits on either side (training crops end at or before ``z``, held-out crops start there)."""
    counts = lung.sum(axis=(0, 1))
    z = int(np.searchsorted(np.cumsum(counts), counts.sum() / 2)) + 1  # slices [0, z) hold at least half
    if lung.shape[2] < 2 * depth:
        raise ValueError(f"{NAME}: {lung.shape[2]} slices cannot hold two disjoint crops of {depth} slices")
    return min(max(z, depth), lung.shape[2] - depth)


def _random_crop(ct: ChestCT, size: tuple[int, int, int], z_range: tuple[int, int],
                 rng: np.random.Generator) -> tuple[tuple[slice, ...], np.ndarray]:
    """A crop of ``size`` centred on a random lung voxel of the slices ``z_range`` (``[start, stop)``), shifted to lie
    inside the volume and inside those slices."""
    lung_voxels = np.argwhere(ct.lung[:, :, z_range[0]:z_range[1]]) + (0, 0, z_range[0])
    centre = lung_voxels[rng.integers(len(lung_voxels))]
    lo = np.array([0, 0, z_range[0]])
    hi = np.array([ct.hu.shape[0], ct.hu.shape[1], z_range[1]]) - size
    start = np.clip(centre - np.asarray(size) // 2, lo, hi)
    return tuple(slice(a, a + n) for a, n in zip(start, size)), start


def centre_box(size: tuple[int, int, int], spacing, reach_mm: float = CENTRE_MM) -> np.ndarray:
    """``size`` bool mask of the voxels within ``reach_mm`` of the crop's centre along every axis (at least the
    central voxel)."""
    centre = np.asarray(size) // 2
    reach = np.maximum(np.floor(reach_mm / np.asarray(spacing, dtype=float)), 0).astype(int)
    mask = np.zeros(size, bool)
    mask[tuple(slice(c - r, c + r + 1) for c, r in zip(centre, reach))] = True
    return mask


def _matched_crops(ct: ChestCT, size: tuple[int, int, int], z_range: tuple[int, int], rng: np.random.Generator,
                   tries: int = 100) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, int]]]:
    """One location and its three crops: ``(start, {label: (hu, z of the preview slice)})``, the lesions centred
    near the crop's centre; a location without room for a mass there is re-drawn."""
    centre = centre_box(size, ct.spacing)
    for _ in range(tries):
        box, start = _random_crop(ct, size, z_range, rng)
        hu, lung = ct.hu[box], ct.lung[box]
        crops = {"normal": (hu, size[2] // 2)}
        try:
            for label in CLASS_NAMES[1:]:
                with_lesion, _, lesion = insert_lesion(hu, lung, ct.spacing, rng, diameter_mm=DIAMETER_MM[label],
                                                       min_inside=0.7, center_mask=centre)
                crops[label] = (with_lesion, int(lesion.center[2]))
        except ValueError:
            continue
        return start, crops
    raise RuntimeError(f"{NAME}: found no crop location in slices {z_range} with room for a mass in {tries} tries")


def build(out_dir: Path, synthetic: bool = False, seed: int = 0) -> dict:
    """Write the data set under ``out_dir / "ct_classification"`` and return its manifest entry."""
    ct = load_chest_ct(synthetic)
    size, counts = (REAL_CROP, REAL_COUNTS) if ct.source == "real" else (SYNTHETIC_CROP, SYNTHETIC_COUNTS)
    z_split = split_plane(ct.lung, size[2])
    regions = {"training": (0, z_split), "validation": (z_split, ct.hu.shape[2]), "test": (z_split, ct.hu.shape[2])}
    with staged_dir(Path(out_dir) / NAME) as folder:
        rng = np.random.default_rng(seed)
        datalist: dict = {"class_names": CLASS_NAMES, "multi_label": False}
        previews, titles = [], []
        for split, count in zip(("training", "validation", "test"), counts):
            datalist[split] = []
            for location in range(count // len(CLASS_NAMES)):
                start, crops = _matched_crops(ct, size, regions[split], rng)
                for label, (hu, z) in crops.items():
                    name = f"{split}_{location:03d}_{label}"
                    save_nifti(np.round(hu).clip(-1024, 3071).astype(np.int16), _crop_affine(ct.affine, start),
                               folder / "images" / f"{name}.nii.gz")
                    datalist[split].append({"image": f"images/{name}.nii.gz", "label": label})
                    if split == "test" and len(previews) < 6:
                        previews.append(np.rot90(hu[:, :, z]))
                        titles.append(label)
        save_json(datalist, folder / "datalist.json")
        save_contact_sheet(np.clip((np.stack(previews) + 1000) / 1400, 0, 1), titles, folder / "preview.png", title="axial slices (through the lesion)")
        return {"path": NAME, "datalist": f"{NAME}/datalist.json", "source": ct.source, "class_names": CLASS_NAMES,
                "cases": {k: len(datalist[k]) for k in ("training", "validation", "test")}, "split_slice": z_split}
