"""The picture ``tools/monai_label.sh`` draws of each served bundle's ``/infer`` answer: a radiograph stored as
``(X, Y, 1)`` is drawn as a 2D image, and each structure in its colour of every picture (``structure_colour``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np

from unimiss_monai.conventions import structure_colour

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "monai_label.sh"


def _picture_program() -> str:
    text = SCRIPT.read_text()
    match = re.search(r'result=\$\("\$PY" - "\$WORK" [^\n]*<<\'EOF\'\n(.*?)\nEOF\n', text, re.S)
    assert match, "the picture step of tools/monai_label.sh was not found"
    return match.group(1)


def test_a_radiograph_of_one_slice_is_drawn_in_the_structure_colours(tmp_path):
    work, studies = tmp_path / "work", tmp_path / "studies"
    work.mkdir(), studies.mkdir()
    (work / "info.json").write_text(json.dumps({"models": {"cxr": {"labels": {"heart": 3, "lung_left": 1}}}}))
    image = np.full((60, 80, 1), 0.5, np.float32)
    label = np.zeros((60, 80, 1), np.uint8)
    label[:30] = 3  # heart over the first half of X: the picture's left half (X runs left to right)
    nib.save(nib.Nifti1Image(image, np.eye(4)), studies / "rg.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), work / "cxr_pred.nii.gz")
    proc = subprocess.run([sys.executable, "-", str(work), str(studies), "cxr", "rg"], input=_picture_program(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "values [0, 3]" in proc.stdout
    rgb = matplotlib.image.imread(work / "cxr_pred.png")[..., :3]
    h, w = rgb.shape[:2]
    middle = slice(h // 3, 2 * h // 3)
    grey = rgb[h // 2, 3 * w // 4]  # the unlabelled half: the image's grey
    assert np.ptp(grey) < 0.01
    expected = 0.45 * np.array(structure_colour("heart")) / 255 + 0.55 * grey  # the heart blended over it
    close = np.abs(rgb - expected).max(-1) < 0.03
    assert close[middle, w // 8: w // 3].mean() > 0.9 and close[middle, 2 * w // 3: 7 * w // 8].mean() < 0.01
