"""Inference given a ``--dataset_dir`` that holds a ``datalist.json`` and no image (a fine-tune data set kept apart
from its images): the bundles that read images and not a datalist say so in their "no image" error, naming the file
and what to pass instead (they said only that nothing was found); and every inference bundle takes ``--amp``, as the
segmentation ones did (the classification ones refused it as an unknown config id)."""

from __future__ import annotations

import json

import pytest
from bundle_runner import run_bundle_cli, smoke_weights

pytestmark = pytest.mark.integration

# bundle -> what its "nothing found" error began with
NOTHING_FOUND = {
    "unimiss_ct_classification": "no image (",
    "unimiss_cxr_classification": "no image (",
    "unimiss_cxr_segmentation": "no radiographs found",
}


@pytest.mark.parametrize("bundle", list(NOTHING_FOUND))
def test_a_datalist_in_an_imageless_folder_is_named_with_the_fix(bundle, tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    (data / "datalist.json").write_text(json.dumps({"test": [{"image": "/tmp/x/nothere.png", "label": []}]}))
    smoke_weights(bundle, tmp_path / "bundle")
    run = run_bundle_cli(bundle, ["inference.json", "smoke.yaml"], timeout=300, bundle_root=str(tmp_path / "bundle"),
                         dataset_dir=str(data), output_dir=str(tmp_path / "out"), amp="false")
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode != 0 and len(error) == 1, run.stderr[-2000:]
    assert NOTHING_FOUND[bundle] in error[0] and "unknown config id" not in error[0], error[0]
    assert f"{str(data / 'datalist.json')!r} is not read by this bundle's inference" in error[0], error[0]
    assert "pass --dataset_dir with the folder of the images it lists" in error[0], error[0]


@pytest.mark.parametrize("bundle", ["unimiss_ct_classification", "unimiss_cxr_classification"])
@pytest.mark.parametrize("given, flag", [("true", True), ("no", False)])
def test_amp_of_classification_inference_reaches_its_evaluator(bundle, given, flag):
    from pathlib import Path

    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[2] / "bundles" / bundle / "configs" / "inference.json"))
    parser["amp"] = given  # as `--amp true` passes it: a string
    assert parser.get_parsed_content("amp_flag") is flag
    assert parser["evaluator"]["amp"] == "@amp_flag"
