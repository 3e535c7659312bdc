"""Inference given a ``--dataset_dir`` that holds a ``datalist.json`` (a fine-tune data set): every inference bundle
runs on its held-out list, not on every image beside it (the classification and CXR segmentation bundles read the
folder's images, the training ones too; CT segmentation read a ``testing`` list, else the ``training`` one); and every
inference bundle takes ``--amp``, as the segmentation ones did (the classification ones refused it as an unknown
config id)."""

from __future__ import annotations

import json

import pytest
from bundle_runner import run_bundle_cli, smoke_weights

pytestmark = pytest.mark.integration

# bundle -> (the config id of its inputs, the image file suffix it reads)
INPUTS = {
    "unimiss_ct_classification": ("inputs", ".nii.gz"),
    "unimiss_cxr_classification": ("inputs", ".png"),
    "unimiss_cxr_segmentation": ("inputs", ".png"),
    "unimiss_ct_segmentation": ("dataset#data", ".nii.gz"),
}


def _fine_tune_folder(root, suffix, segmentation):
    """A fine-tune data set as users keep one: images beside a datalist whose ``test`` list holds two of them."""
    root.mkdir()
    for name in ("tr1", "tr2", "te1", "te2"):
        (root / f"{name}{suffix}").write_bytes(b"")  # never read: the inputs are listed, not loaded

    def item(name):
        return {"image": f"{name}{suffix}", "label": f"{name}_label{suffix}" if segmentation else 1}

    (root / "datalist.json").write_text(json.dumps({
        "training": [item("tr1"), item("tr2")],
        "test": [item("te1"), f"te2{suffix}"],  # a plain path too, as the Decathlon's dataset.json lists test images
    }))
    return root


@pytest.mark.parametrize("bundle", list(INPUTS))
def test_inference_runs_on_the_test_list_of_a_folders_datalist(bundle, tmp_path):
    from pathlib import Path

    from monai.bundle import ConfigParser

    key, suffix = INPUTS[bundle]
    data = _fine_tune_folder(tmp_path / "ds", suffix, "segmentation" in bundle)
    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[2] / "bundles" / bundle / "configs" / "inference.json"))
    parser["dataset_dir"] = str(data)
    images = [Path(item["image"]).name for item in parser.get_parsed_content(key)]
    # the training images beside them were run on too (classification, CXR segmentation: every image of the folder;
    # CT segmentation: its 'training' list, as it read only a 'testing' one)
    assert images == [f"te1{suffix}", f"te2{suffix}"], images


def test_a_datalist_naming_only_missing_images_fails_each_case_and_the_run(tmp_path):
    data = tmp_path / "ds"
    data.mkdir()
    (data / "datalist.json").write_text(json.dumps({"test": [{"image": "nothere.png", "label": []}]}))
    bundle = "unimiss_cxr_classification"
    smoke_weights(bundle, tmp_path / "bundle")
    run = run_bundle_cli(bundle, ["inference.json", "smoke.yaml"], timeout=300, bundle_root=str(tmp_path / "bundle"),
                         dataset_dir=str(data), output_dir=str(tmp_path / "out"), amp="false")
    assert run.returncode != 0 and "no case worked (1 failed" in run.stderr, run.stderr[-2000:]
    (case,) = json.loads((tmp_path / "out" / "summary.json").read_text())["cases"]
    assert case["status"] == "failed" and case["reason"].startswith(f"image {str(data / 'nothere.png')!r} does not "
                                                                    "exist; fix the datalist entry"), case


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
