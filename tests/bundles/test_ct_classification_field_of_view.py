"""The CT classification bundle's inference and the field of view its model was trained on (90 x 90 x 80 mm crops):
a whole CT is refused in one line naming the file and the fix, or with ``field_of_view: centre`` its central training
field is classified; a crop of the training size passes without a warning; and the saliency panels keep the
proportions of what the network saw, however unequal the resize of each axis.

The model is the smoke network with untrained weights: what is checked is what reaches it, not its verdict.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_runner import configs
from classification_bundle_checks import run_inference

from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.data.writers import save_nifti

sys.path.insert(0, str(Path(__file__).parents[1] / "visualize"))
from saliency_panels import panel_sizes  # noqa: E402

BUNDLE = "unimiss_ct_classification"
CLASSES = ["normal", "nodule", "mass"]
FIELD = [90.0, 90.0, 80.0]  # x, y, z mm: inference.json's default
pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory) -> Path:
    """A bundle root whose models/smoke/model.pt (where the smoke overlay reads it) fits the smoke network (random
    weights)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(BUNDLE, "inference.json", "smoke.yaml"))
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def")
    root = tmp_path_factory.mktemp("ct_cls_fov")
    (root / "models" / "smoke").mkdir(parents=True)
    info = {"bundle": BUNDLE, "variant": "mitplus", "classes": CLASSES}
    torch.save({"model": net.state_dict(), "info": info}, root / "models" / "smoke" / "model.pt")
    return root


def _ct(folder: Path, name: str, shape, spacing) -> Path:
    """A phantom chest CT of ``shape`` voxels of ``spacing`` mm (x, y, z)."""
    folder.mkdir(exist_ok=True)
    ph = make_ct_phantom(tuple(shape), tuple(spacing), seed=1)
    return save_nifti(ph.hu.astype(np.int16), ph.affine, folder / name)


def _field_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "field of view" in str(w.message)]


def test_inference_defaults_to_refusing_other_fields():
    config = json.loads(Path(configs(BUNDLE, "inference.json")[0]).read_text())
    assert config["field_of_view_mm"] == FIELD and config["field_of_view"] == "refuse"
    # the smoke network learns no scale, so its overlay checks nothing; the tests below put the check back


def test_a_whole_ct_is_refused_and_a_training_size_crop_is_not(model_root, tmp_path):
    inputs = tmp_path / "inputs"
    _ct(inputs, "whole.nii.gz", (64, 64, 48), (5.0, 5.0, 5.0))  # 320 x 320 x 240 mm
    _ct(inputs, "crop.nii.gz", (64, 64, 32), (1.40625, 1.40625, 2.5))  # the sample crops: 90 x 90 x 80 mm
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        rows = run_inference(BUNDLE, inputs, model_root, tmp_path / "out", field_of_view="refuse", failed=1)
    status = {Path(r["case"]).name: r["status"] for r in rows}
    assert status["crop.nii.gz"] == "ok" and not _field_warnings(record)
    refusal = status["whole.nii.gz"]
    assert refusal.startswith("failed: ") and "\n" not in refusal
    assert "whole.nii.gz: field of view 320 x 320 x 240 mm is 3.6x larger than the 90 x 90 x 80 mm" in refusal
    assert "--field_of_view centre" in refusal


def test_centre_mode_and_saliency_proportions(model_root, tmp_path):
    inputs = tmp_path / "inputs"
    _ct(inputs, "whole.nii.gz", (64, 64, 48), (5.0, 5.0, 5.0))
    # 90 x 90 x 80 mm in voxels of three sizes: the smoke input (32 x 32 x 16) resizes each axis by another factor
    _ct(inputs, "anisotropic.nii.gz", (48, 64, 40), (1.875, 1.40625, 2.0))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        rows = run_inference(BUNDLE, inputs, model_root, tmp_path / "out", field_of_view="centre", save_saliency=True)
    assert [r["status"] for r in rows] == ["ok", "ok"] and not _field_warnings(record)
    for name in ("anisotropic", "whole"):  # both show 90 x 90 x 80 mm (x, y, z): the whole CT's central field
        axial, coronal, sagittal = panel_sizes(tmp_path / "out" / "saliency" / f"{name}.png")
        # axial: rows y over columns x; coronal: rows z over columns x; sagittal: rows z over columns y
        assert axial[0] / axial[1] == pytest.approx(90 / 90, rel=0.05), (name, axial)
        assert coronal[0] / coronal[1] == pytest.approx(80 / 90, rel=0.05), (name, coronal)
        assert sagittal[0] / sagittal[1] == pytest.approx(80 / 90, rel=0.05), (name, sagittal)
