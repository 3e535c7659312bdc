"""Sample data set ``cxr_segmentation``: chest X-rays with exact multi-label masks, as DRRs of a labelled chest CT.

Each pose (C-arm rotation, isocentre shift, magnification) gives one DRR and, from the same geometry, the projected
thickness of each structure's voxels; a structure is present at a pixel when its projected thickness exceeds
``MASK_THRESHOLD_MM``. Structures overlap in projection (heart over lungs), so masks are multi-label.

Layout::

    cxr_segmentation/datalist.json      {"structures": [...], "training": [...], "validation": [...], "test": [...]}
    cxr_segmentation/images/<id>.nii.gz  float32 line-integral DRR, array (X, Y) (column axis first, as MONAI loads
                                         PNG/DICOM), affine: detector pixel spacing in mm
    cxr_segmentation/labels/<id>.nii.gz  uint8 (X, Y, 1, S): one binary mask per structure, same grid
    cxr_segmentation/inference/          radiographs for the inference demo (the real RG1_UNCR.dcm when installed,
                                         and the first test DRRs)
    cxr_segmentation/poses.json          the pose of every image

Training, validation and test images differ in more than pose:

- **Anatomies.** Each split has its own anatomies (:func:`anatomy_variant`), variants of the CT with another body
  habitus (the body scaled left-right, antero-posteriorly and cranio-caudally about its centre) and another heart size
  (the heart magnified about its centroid); no anatomy is shared between splits, so test images show body shapes and
  heart sizes that no training image shows. They are variants of one scan, not other patients.
- **Poses.** Training, validation and test poses are independent draws; the test poses are further held out by
  construction: their oblique angle lies in bands that no training or validation pose uses.

``poses.json`` records each image's pose and anatomy (``anatomy``: id, body scale, heart scale).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from unimiss_monai.data.locators import find_real_radiograph, read_structure_names, real_ct_or_fallback
from unimiss_monai.data.writers import atomic_path, save_json, save_nifti, staged_dir

__all__ = ["STRUCTURES", "REAL_GROUPS", "MASK_THRESHOLD_MM", "anatomy_variant", "build", "pool_mask", "sample_poses",
           "render_case", "scale_about_centre"]

logger = logging.getLogger(__name__)

NAME = "cxr_segmentation"
# mask channels, in order (also the bundle's channel_def)
STRUCTURES = ("lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right")
# TotalSegmentator structure names merged into each channel (lungs come as lobes)
REAL_GROUPS = {
    "lung_left": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
    "lung_right": ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
    "heart": ("heart",),
    "clavicle_left": ("clavicula_left",),
    "clavicle_right": ("clavicula_right",),
}
MASK_THRESHOLD_MM = 1.0
# oblique angle (degrees about the superior axis): training/validation draw from TRAIN_BANDS, test from TEST_BANDS
TRAIN_BANDS = ((-12.0, -6.0), (-3.0, 3.0), (6.0, 12.0))
TEST_BANDS = ((-6.0, -3.0), (3.0, 6.0))
# anatomy variants: body scale along world left-right, antero-posterior, cranio-caudal; heart magnification in-plane
BODY_SCALE = ((0.88, 1.12), (0.88, 1.12), (0.92, 1.08))
HEART_SCALE = (1.0, 1.2)
# (images per split), (anatomies per split), detector (H, W), pixel spacing (mm) for the real CT and the small phantom
REAL = {"splits": {"training": 32, "validation": 8, "test": 8}, "anatomies": {"training": 4, "validation": 2, "test": 2},
        "detector": (256, 256), "spacing": 1.75, "mask_pool": 2}
SYNTHETIC = {"splits": {"training": 8, "validation": 2, "test": 2}, "anatomies": {"training": 2, "validation": 1, "test": 1},
             "detector": (64, 64), "spacing": 7.0, "shape": (40, 40, 32), "voxel": (10.0, 10.0, 11.0)}


def sample_poses(n: int, bands, rng: np.random.Generator) -> list[dict]:
    """``n`` random poses: oblique angle from ``bands``, small tilt/roll, isocentre shift, source-detector distance."""
    poses = []
    for _ in range(n):
        lo, hi = bands[rng.integers(len(bands))]
        poses.append({
            "view": "AP",
            "rotation": [float(rng.uniform(-5, 5)), float(rng.uniform(-3, 3)), float(rng.uniform(lo, hi))],
            "translation": [float(rng.uniform(-20, 20)), 0.0, float(rng.uniform(-25, 25))],
            # magnification sdd / sid from ~1.06 to ~1.30
            "sdd": float(rng.uniform(900.0, 1100.0)),
        })
    return poses


def render_case(prepared, pose: dict, detector, spacing):
    """DRR ``(H, W)`` and masks ``(S, H, W)`` uint8 of one pose.

    Args:
        prepared: :class:`unimiss_monai.drr.PreparedVolume` of the CT (HU converted), then one per structure: its
            binary mask prepared as attenuation 1/mm, so that a ray integrates to the structure's thickness.
    """
    from unimiss_monai.drr import render

    view = {k: pose[k] for k in ("view", "rotation", "translation")}
    kw = dict(views=[view], detector_shape=detector, pixel_spacing=spacing, sdd=pose["sdd"], sid=850.0)
    image = render(prepared[0], None, **kw)[0].numpy()
    masks = [render(p, None, **kw)[0].numpy() > MASK_THRESHOLD_MM for p in prepared[1:]]
    return image, np.stack(masks).astype(np.uint8)


def pool_mask(mask: np.ndarray, affine: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Average ``factor`` x ``factor`` in-plane voxel blocks of a binary mask: each coarse voxel holds the occupied
    fraction, so projected thickness is kept while the projection is ``factor**2`` times cheaper."""
    if factor <= 1:
        return mask, affine
    x, y = (mask.shape[0] // factor) * factor, (mask.shape[1] // factor) * factor
    pooled = mask[:x, :y].reshape(x // factor, factor, y // factor, factor, -1).mean(axis=(1, 3))
    scaled = affine.copy()
    scaled[:3, :2] *= factor
    scaled[:3, 3] = affine[:3, :3] @ np.array([(factor - 1) / 2, (factor - 1) / 2, 0.0]) + affine[:3, 3]
    return pooled.astype(np.float32), scaled


def _prepare(hu: np.ndarray, affine: np.ndarray, groups: list[np.ndarray], pool: int = 1) -> list:
    # converted once per anatomy, not per view
    from unimiss_monai.drr import prepare_volume

    return [prepare_volume(hu, affine)] + [prepare_volume(*pool_mask(g, affine, pool), volume_unit="mu") for g in groups]


def scale_about_centre(affine: np.ndarray, shape, scale) -> np.ndarray:
    """``affine`` with the world scaled by ``scale`` (x, y, z) about the volume centre: the same voxels, a body that
    is wider, deeper or taller in mm, and the centre (the DRR isocentre) where it was."""
    from unimiss_monai.drr import volume_center

    centre = volume_center(shape, affine)
    out = affine.astype(np.float64).copy()
    out[:3, :3] = np.diag(scale) @ affine[:3, :3]
    out[:3, 3] = centre + np.diag(scale) @ (affine[:3, 3] - centre)
    return out


def anatomy_variant(ct: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], dict]:
    """One anatomy: ``(hu, affine, groups, params)`` with a random body scale (:data:`BODY_SCALE`, via the affine)
    and heart magnification (:data:`HEART_SCALE`, resampled in the CT; the lungs give up the voxels the heart takes).

    Args:
        ct: ``hu``, ``affine``, ``groups`` (one float mask per :data:`STRUCTURES` entry), ``labels`` (integer map) and
            ``heart_values`` (its heart labels).
    """
    from unimiss_monai.data.lesions import enlarge_region

    body = [float(rng.uniform(lo, hi)) for lo, hi in BODY_SCALE]
    heart_scale = float(rng.uniform(*HEART_SCALE))
    hu, groups = ct["hu"], list(ct["groups"])
    if heart_scale > 1.0:
        hu, heart = enlarge_region(hu, ct["labels"], ct["heart_values"], scale=(heart_scale, heart_scale, 1.0))
        heart_index = STRUCTURES.index("heart")
        groups[heart_index] = np.maximum(groups[heart_index], heart.astype(np.float32))
        for lung in ("lung_left", "lung_right"):
            groups[STRUCTURES.index(lung)] = groups[STRUCTURES.index(lung)] * ~heart
    affine = scale_about_centre(ct["affine"], hu.shape, body)
    return hu, affine, groups, {"body_scale": body, "heart_scale": heart_scale}


def _synthetic_ct():
    """Phantom HU volume with its structure masks; the phantom has no clavicles, so two bone rods are added."""
    from unimiss_monai.data.phantom import PHANTOM_HU, PHANTOM_LABELS, make_ct_phantom

    spec = SYNTHETIC
    ph = make_ct_phantom(spec["shape"], spec["voxel"], seed=0)
    value = {name: v for v, name in PHANTOM_LABELS.items()}
    hu, labels = ph.hu.copy(), ph.labels
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in spec["shape"]], indexing="ij")
    clavicles = []
    for side in (-1.0, 1.0):  # RAS: the patient's left is -x
        rod = (np.abs(x - side * 0.35) < 0.3) & (np.abs(y - 0.3) < 0.12) & (np.abs(z - (0.75 + 0.15 * np.abs(x))) < 0.08)
        hu[rod] = PHANTOM_HU["ribs"]
        clavicles.append(rod)
    groups = [labels == value["lung_left"], labels == value["lung_right"], labels == value["heart"], *clavicles]
    return {"hu": hu, "affine": ph.affine, "groups": [g.astype(np.float32) for g in groups], "labels": labels,
            "heart_values": (value["heart"],)}


def _real_ct(real):
    import nibabel as nib

    hu = np.asarray(nib.load(str(real.image)).dataobj, dtype=np.float32)
    ct = nib.load(str(real.labels))
    labels = np.asarray(ct.dataobj)
    ids = {name: value for value, name in read_structure_names(real.structures).items()}
    missing = [n for names in REAL_GROUPS.values() for n in names if n not in ids]
    if missing:
        raise ValueError(f"{real.structures}: structures {missing} not found; expected TotalSegmentator names")
    groups = [np.isin(labels, [ids[n] for n in REAL_GROUPS[s]]).astype(np.float32) for s in STRUCTURES]
    return {"hu": hu, "affine": ct.affine, "groups": groups, "labels": labels,
            "heart_values": tuple(ids[n] for n in REAL_GROUPS["heart"])}


def build(out_dir: Path, synthetic: bool = False) -> dict:
    """Write the ``cxr_segmentation`` data set under ``out_dir`` and return its ``samples.json`` entry."""
    from tqdm import tqdm

    from unimiss_monai.drr import detector_affine, volume_center

    out_dir = Path(out_dir)
    real = real_ct_or_fallback(synthetic, NAME)
    spec = REAL if real is not None else SYNTHETIC
    ct = _real_ct(real) if real is not None else _synthetic_ct()
    rng = np.random.default_rng(2022)
    splits = {split: sample_poses(n, TEST_BANDS if split == "test" else TRAIN_BANDS, rng) for split, n in spec["splits"].items()}
    anatomy_rng = np.random.default_rng(2023)  # its own stream: the poses stay those of the single-anatomy set
    centre = volume_center(ct["hu"].shape, ct["affine"])  # every variant keeps it

    with staged_dir(out_dir / NAME) as tmp:
        datalist: dict = {"name": NAME, "structures": list(STRUCTURES), "source": "real" if real else "synthetic"}
        poses = {}
        total = sum(len(p) for p in splits.values())
        with tqdm(total=total, desc="cxr_segmentation DRRs", unit="image", leave=False) as bar:
            for split, split_poses in splits.items():
                datalist[split] = [None] * len(split_poses)
                n_anatomies = spec["anatomies"][split]
                for a in range(n_anatomies):
                    hu, affine, groups, params = anatomy_variant(ct, anatomy_rng)
                    prepared = _prepare(hu, affine, groups, spec.get("mask_pool", 1))
                    del hu, groups
                    anatomy = {"id": f"{split}_{a}", **params}
                    for i in range(a, len(split_poses), n_anatomies):  # images of a split take its anatomies in turn
                        pose = split_poses[i]
                        case = f"{split}_{i:03d}"
                        image, masks = render_case(prepared, pose, spec["detector"], spec["spacing"])
                        view = {k: pose[k] for k in ("view", "rotation", "translation")}
                        # stored column-first (X, Y) like MONAI's PNG/DICOM readers, with the matching affine
                        det = detector_affine(view, spec["detector"], spec["spacing"], pose["sdd"], 850.0, centre + np.asarray(pose["translation"]))[:, [1, 0, 2, 3]]
                        save_nifti(image.T.astype(np.float32), det, tmp / "images" / f"{case}.nii.gz")
                        save_nifti(masks.transpose(2, 1, 0)[:, :, None, :], det, tmp / "labels" / f"{case}.nii.gz")
                        datalist[split][i] = {"image": f"images/{case}.nii.gz", "label": f"labels/{case}.nii.gz"}
                        poses[case] = {**pose, "anatomy": anatomy}
                        bar.update(1)
                    del prepared
        save_json(dict(sorted(poses.items())), tmp / "poses.json")
        (tmp / "inference").mkdir()
        for item in datalist["test"][:2]:
            shutil.copyfile(tmp / item["image"], tmp / "inference" / Path(item["image"]).name)
        radiograph = find_real_radiograph()
        if radiograph is not None and not synthetic:
            with atomic_path(tmp / "inference" / radiograph.name) as t:
                shutil.copyfile(radiograph, t)
        save_json(datalist, tmp / "datalist.json")
    counts = {k: len(v) for k, v in splits.items()}
    logger.info("cxr_segmentation: %s images (%s)", counts, datalist["source"])
    return {"path": NAME, "datalist": f"{NAME}/datalist.json", "source": datalist["source"], "structures": list(STRUCTURES), **counts}
