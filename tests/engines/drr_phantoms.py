"""Tiny CT phantoms for the DRRGenerator tests, and a small detector that renders them in a fraction of a second."""

from __future__ import annotations

import json
from pathlib import Path

from unimiss_monai.data import make_ct_phantom, phantom_affine, save_nifti

SHAPE = (32, 28, 20)
SPACING = (8.0, 8.0, 10.0)
SMALL = {"views": ["AP", "LL"], "detector_shape": (40, 32), "pixel_spacing": 8.0, "progress": False}


def phantom_case(folder: Path, name: str, axcodes: str = "RAS", labels: bool = True):
    """The phantom CT ``folder/name.nii.gz`` stored in ``axcodes`` voxel order, with its label map and label names
    beside it unless ``labels`` is False; returns the phantom."""
    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE, axcodes), noise_hu=0)
    save_nifti(p.hu, p.affine, folder / f"{name}.nii.gz")
    if labels:
        save_nifti(p.labels, p.affine, folder / f"{name}_labels.nii.gz")
        (folder / f"{name}_labels.json").write_text(json.dumps({str(k): v for k, v in p.label_names.items()}))
    return p


def as_an_earlier_version_wrote(case_dir: Path) -> None:
    """A CT's output folder's marker as versions before signed markers wrote it (file names only): a done record a
    test rewrites to an earlier version's form is then that version's own file, not an edit of the user's."""
    from unimiss_monai.data.writers import OUTPUT_MARKER

    marker = case_dir / OUTPUT_MARKER
    marker.write_text("".join(line.split("\t")[0] + "\n" for line in marker.read_text().splitlines()))
