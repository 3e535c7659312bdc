"""Sample data set ``cxr_classification``: DRRs of a chest CT with and without simulated findings (multi-label).

A proxy for the chest X-ray classification fine-tuning of UniMiSS+ with exact labels. Each case starts from the same
chest CT (the real one, in-plane resolution halved, or the phantom) and independently gets:

- ``nodule``: one soft-tissue lesion of 15-30 mm inserted in the lung (:func:`unimiss_monai.data.lesions.insert_lesion`;
  smaller nodules are barely visible on a radiograph, as in practice);
- ``cardiomegaly``: the heart magnified about its centroid by 1.2-1.35 left-right and antero-posterior and 1.05
  along the body axis (:func:`unimiss_monai.data.lesions.enlarge_region`), which widens the cardiac silhouette of
  the AP projection, i.e. raises the cardiothoracic ratio, the radiographic sign of cardiomegaly.

The four combinations rotate through the cases, so every split has positives and negatives of both findings. Each
case is an AP DRR (:func:`unimiss_monai.drr.render`) at a random pose (+-6 degrees about each axis, +-15 mm shift),
windowed to an 8-bit PNG.

Layout::

    cxr_classification/datalist.json        {"class_names": ["nodule", "cardiomegaly"], "multi_label": true,
                                              "training"|"validation"|"test": [{"image", "label": [names]}, ...]}
    cxr_classification/images/<name>.png     the radiographs (rows: superior -> inferior)
    cxr_classification/preview.png           a few test radiographs and their findings
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from unimiss_monai.data.lesions import enlarge_region, insert_lesion
from unimiss_monai.data.sample_sets.ct_classification import load_chest_ct
from unimiss_monai.data.writers import save_contact_sheet, save_json, save_png, staged_dir

__all__ = ["NAME", "CLASS_NAMES", "build"]

logger = logging.getLogger(__name__)

NAME = "cxr_classification"
CLASS_NAMES = ["nodule", "cardiomegaly"]
NODULE_MM = (15.0, 30.0)
HEART_SCALE = (1.2, 1.35)
# (training, validation, test) cases, multiples of the 4 finding combinations; detector (pixels, mm per pixel)
REAL_COUNTS, SYNTHETIC_COUNTS = (64, 16, 16), (16, 8, 8)
REAL_DETECTOR, SYNTHETIC_DETECTOR = ((256, 256), 1.75), ((64, 64), 6.0)


def build(out_dir: Path, synthetic: bool = False, seed: int = 0) -> dict:
    """Write the data set under ``out_dir / "cxr_classification"`` and return its manifest entry."""
    from tqdm import tqdm

    from unimiss_monai.drr import Pose, render, to_radiograph

    ct = load_chest_ct(synthetic)
    counts, (detector, pixel) = (REAL_COUNTS, REAL_DETECTOR) if ct.source == "real" else (SYNTHETIC_COUNTS, SYNTHETIC_DETECTOR)
    with staged_dir(Path(out_dir) / NAME) as folder:
        rng = np.random.default_rng(seed)
        datalist: dict = {"class_names": CLASS_NAMES, "multi_label": True}
        previews, titles = [], []
        cases = [(split, i) for split, n in zip(("training", "validation", "test"), counts) for i in range(n)]
        for split, i in tqdm(cases, desc=NAME, disable=synthetic):
            has_nodule, has_cardiomegaly = bool(i % 2), bool((i // 2) % 2)
            hu, lung = ct.hu, ct.lung
            if has_cardiomegaly:
                s = rng.uniform(*HEART_SCALE)
                hu, heart = enlarge_region(hu, ct.labels, ct.heart_values, scale=(s, s, 1.05))
                lung = lung & ~heart
            if has_nodule:
                hu = insert_lesion(hu, lung, ct.spacing, rng, diameter_mm=NODULE_MM)[0]
            pose = Pose("AP", rotation=tuple(rng.uniform(-6, 6, 3)), translation=tuple(rng.uniform(-15, 15, 3)))
            drr = render(hu, ct.affine, views=[pose], detector_shape=detector, pixel_spacing=pixel)[0]
            image = to_radiograph(drr, bits=8)
            findings = [n for n, on in zip(CLASS_NAMES, (has_nodule, has_cardiomegaly)) if on]
            name = f"{split}_{i:03d}_{'_'.join(findings) or 'clear'}"
            save_png(image, folder / "images" / f"{name}.png")
            datalist.setdefault(split, []).append({"image": f"images/{name}.png", "label": findings})
            if split == "test" and len(previews) < 4:
                previews.append(image)
                titles.append(", ".join(findings) or "no finding")
        save_json(datalist, folder / "datalist.json")
        save_contact_sheet(np.stack(previews), titles, folder / "preview.png", title="AP DRRs with simulated findings")
        return {"path": NAME, "datalist": f"{NAME}/datalist.json", "source": ct.source, "class_names": CLASS_NAMES,
                "cases": {k: len(datalist[k]) for k in ("training", "validation", "test")}}
