"""``pretraining`` sample set: CT slabs with their DRRs, and X-ray images, in one decathlon-style datalist.

Layout::

    pretraining/datalist.json   {"ct": [{"image": "ct/<slab>.nii.gz", "drr": "drr/<slab>_<view>.nii.gz"}, ...],
                                 "xray": [{"image": "xray/<name>.(dcm|nii.gz)"}, ...],
                                 "probe": [{"image": "probe/<case>_<organ>_<i>.nii.gz", "label": "<organ>",
                                            "case": "<case>", "group": "real", "box": [start, stop]}, ...]}

``probe`` is the labelled set of the k-NN monitor (:class:`unimiss_monai.handlers.KNNProbe`): CT crops centred on a
voxel of one organ, labelled by organ: the TotalSegmentator organs of the real CT in real mode, the phantoms' lungs,
heart and spine in synthetic mode (never both in one probe). No two crops of one case share a voxel, and each item
names its ``case``, its ``group`` (``real`` or ``phantom``) and its ``[start, stop)`` voxel ``box`` in the case.

Real mode: 24-slice slabs of the real chest CT, each with DRRs at several poses (one datalist entry per pose), the
real radiograph, DRR-derived X-ray-like images for variety, plus small phantoms. ``synthetic=True``: tiny phantoms
only (seconds, for tests).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from unimiss_monai.data.locators import find_real_radiograph, real_ct_or_fallback
from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.data.writers import save_ct, save_json, save_nifti, staged_dir

NAME = "pretraining"
DATALIST = "datalist.json"
REAL_VIEWS = ("AP", "PA", "LAT_LEFT")
# layout version, in the manifest entry: 2 = disjoint probe crops with case, group and box, real and phantom apart
VERSION = 2

logger = logging.getLogger(__name__)


def _drr(volume: np.ndarray, affine: np.ndarray, views, size: int) -> np.ndarray:
    """``(V, size, size)`` line-integral DRRs of one slab, fitted to it."""
    from unimiss_monai.drr import render_slabs

    return np.stack([render_slabs(volume, affine, slab_thickness=volume.shape[2], view=v, output_shape=(size, size)).numpy()[0] for v in views])


def _write_case(root: Path, name: str, hu: np.ndarray, affine: np.ndarray, views, thickness: int, drr_size: int) -> list[dict]:
    from unimiss_monai.drr import split_slabs

    entries = []
    for k, slab in enumerate(split_slabs(hu, affine, slab_thickness=thickness)):
        vol = np.ascontiguousarray(slab.volume, dtype=np.float32)
        ct_rel = f"ct/{name}_slab{k:02d}.nii.gz"
        save_ct(vol, slab.affine, root / ct_rel)
        for view, image in zip(views, _drr(vol, slab.affine, views, drr_size)):
            drr_rel = f"drr/{name}_slab{k:02d}_{view}.nii.gz"
            # (X, Y) like the DRR bundle's images (unimiss_monai.conventions), so LoadImage gives (1, X, Y)
            save_nifti(image.T.astype(np.float32), np.eye(4), root / drr_rel)
            entries.append({"image": ct_rel, "drr": drr_rel})
    return entries


def _overlaps(start: np.ndarray, stop: np.ndarray, boxes: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    return any(bool(np.all(start < b_stop) and np.all(b_start < stop)) for b_start, b_stop in boxes)


def _probe_crops(root: Path, name: str, group: str, hu: np.ndarray, affine: np.ndarray, organs: dict[str, np.ndarray],
                 per_organ: int, crop: tuple[int, int, int], rng: np.random.Generator, candidates: int = 4000) -> list[dict]:
    """Up to ``per_organ`` crops of ``crop`` voxels around random voxels of each organ mask, no two of which share a
    voxel, as labelled probe items ``{"image", "label", "case", "group", "box"}``.

    Overlapping crops would let a raw-voxel k-NN match a crop to a near-copy of itself, so each new crop must be
    disjoint from every crop already cut from this case (any organ). Organs take turns, the smallest first, so that
    the large ones (lungs) do not use up the space around the small ones. ``box`` is the crop's
    ``[start, stop)`` voxel range in the case, which lets the probe tell which crops share voxels.
    """
    size = np.minimum(np.asarray(crop), hu.shape)
    limit = np.asarray(hu.shape) - size
    pools = {}
    for organ, mask in organs.items():
        voxels = np.argwhere(mask)
        if len(voxels):
            # a bounded random sample of the organ's voxels: the candidate crop centres, in random order
            pools[organ] = voxels[rng.choice(len(voxels), size=min(candidates, len(voxels)), replace=False)]
    order = sorted(pools, key=lambda o: int(organs[o].sum()))
    boxes: list[tuple[np.ndarray, np.ndarray]] = []
    cursor = dict.fromkeys(order, 0)
    counts = dict.fromkeys(order, 0)
    entries = []
    for _ in range(per_organ):
        for organ in order:
            pool = pools[organ]
            while cursor[organ] < len(pool):
                start = np.clip(pool[cursor[organ]] - size // 2, 0, limit)
                cursor[organ] += 1
                if _overlaps(start, start + size, boxes):
                    continue
                boxes.append((start, start + size))
                box = tuple(slice(int(a), int(a + n)) for a, n in zip(start, size))
                crop_affine = affine.copy()
                crop_affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
                rel = f"probe/{name}_{organ}_{counts[organ]}.nii.gz"
                save_ct(hu[box], crop_affine, root / rel)
                entries.append({"image": rel, "label": organ, "case": name, "group": group,
                                "box": [[int(v) for v in start], [int(v) for v in start + size]]})
                counts[organ] += 1
                break
    short = {o: c for o, c in counts.items() if c < per_organ}
    if short:
        logger.info("probe crops of %s: only %s disjoint crop(s) fit for %s (asked for %d each)", name, list(short.values()), list(short), per_organ)
    return entries


def build(out_dir: Path, synthetic: bool = False) -> dict:
    """Write the ``pretraining`` data set under ``out_dir`` and return its ``samples.json`` entry."""
    out_dir = Path(out_dir)
    with staged_dir(out_dir / NAME) as tmp:
        ct_entries: list[dict] = []
        xray_entries: list[dict] = []
        probe_entries: list[dict] = []
        rng = np.random.default_rng(0)
        real_ct = real_ct_or_fallback(synthetic, NAME)
        if real_ct is not None:
            from unimiss_monai.data.ct_io import load_ct

            hu, affine = load_ct(real_ct.image)
            hu = np.ascontiguousarray(hu, dtype=np.float32)
            ct_entries += _write_case(tmp, "chest", hu, affine, REAL_VIEWS, thickness=24, drr_size=128)
            from unimiss_monai.data.ct_io import load_label_map
            from unimiss_monai.data.totalsegmentator import DEFAULT_STRUCTURES, structure_lookup

            labels = load_label_map(real_ct.labels, hu.shape, affine)
            table, names = structure_lookup(DEFAULT_STRUCTURES, real_ct.structures)
            classes = np.zeros(int(max(table)) + 1, np.int64)
            classes[list(table)] = list(table.values())
            mapped = classes[np.clip(labels.astype(np.int64), 0, len(classes) - 1)]
            organs = {n: mapped == k for k, n in enumerate(names, start=1)}
            probe_entries += _probe_crops(tmp, "chest", "real", hu, affine, organs, per_organ=6, crop=(48, 48, 16), rng=rng)
        # phantoms: several shapes so that even the synthetic set has variety
        shapes = [(40, 40, 24), (48, 40, 32)] if synthetic else [(96, 96, 48), (80, 96, 40)]
        for i, shape in enumerate(shapes):
            ph = make_ct_phantom(shape=shape, spacing=(6.0, 6.0, 6.0), seed=i)
            ct_entries += _write_case(tmp, f"phantom{i}", ph.hu, ph.affine, ("AP", "LAT") if not synthetic else ("AP",), thickness=16 if synthetic else 24, drr_size=64 if synthetic else 128)
            by_name = {v: k for k, v in ph.label_names.items()}
            organs = {"lung": np.isin(ph.labels, [by_name[n] for n in by_name if "lung" in n]),
                      "heart": ph.labels == by_name["heart"], "spine": ph.labels == by_name["spine"]}
            if real_ct is None:
                # phantom crops only where there is no real CT: mixed in, their blocky constant-HU organs (and the
                # phantom-only "spine") would be matched by how phantoms look rather than by anatomy
                probe_entries += _probe_crops(tmp, f"phantom{i}", "phantom", ph.hu, ph.affine, organs, per_organ=2, crop=(12, 12, 8), rng=rng)
        # X-ray-like images: DRRs of the slabs (a fresh list) and, in real mode, the real radiograph
        (tmp / "xray").mkdir(exist_ok=True)
        for e in ct_entries[:: 2 if synthetic else 3]:
            dst = f"xray/{Path(e['drr']).name}"
            shutil.copyfile(tmp / e["drr"], tmp / dst)
            xray_entries.append({"image": dst})
        radiograph = None if synthetic else find_real_radiograph()
        if radiograph is not None:
            shutil.copyfile(radiograph, tmp / "xray" / radiograph.name)
            xray_entries.append({"image": f"xray/{radiograph.name}"})
        source = "real" if real_ct is not None else "synthetic"
        save_json({"name": NAME, "source": source, "ct": ct_entries, "xray": xray_entries, "probe": probe_entries}, tmp / DATALIST)
    return {"path": NAME, "datalist": f"{NAME}/{DATALIST}", "source": source, "version": VERSION, "num_ct": len(ct_entries),
            "num_xray": len(xray_entries), "num_probe": len(probe_entries)}
