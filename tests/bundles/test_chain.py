"""The seam between pretraining and fine-tuning: the smoke pretraining's export, as written, loads into every
fine-tune bundle's network with no encoder tensor left untrained, position embeddings resized to each bundle's own
window (the geometry of both sides is held to one convention by test_geometry_contract.py)."""

from __future__ import annotations

import json

import pytest
import torch
from bundle_runner import configs

# each test needs a whole smoke pretraining run (the module fixture) and a fine-tune network per bundle
pytestmark = [pytest.mark.slow, pytest.mark.integration]

FINE_TUNE = ["unimiss_ct_segmentation", "unimiss_cxr_segmentation", "unimiss_ct_classification", "unimiss_cxr_classification"]


@pytest.fixture(scope="module")
def pretrained_export(sample_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretraining")
    _pretrain({"dataset_dir": str(sample_set("pretraining"))}, out)
    return out / "models" / "model.pt"


def _pretrain(config_overrides: dict, out) -> None:
    from monai.bundle import ConfigWorkflow

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wf = ConfigWorkflow(config_file=configs("unimiss_pretraining", "train.json", "smoke.yaml"), workflow_type="train",
                            output_dir=str(out), bundle_root=str(out / "bundle"), **config_overrides)
        wf.initialize()
        wf.run()
        wf.finalize()
    finally:
        torch.set_num_threads(threads)


def test_export_records_what_it_is(pretrained_export):
    payload = torch.load(pretrained_export, weights_only=True)
    info = payload["info"]
    assert info["variant"] == "mitplus" and info["spatial_dims"] == [2, 3]
    assert list(info["img_size3d"]) == [16, 64, 64] and list(info["img_size2d"]) == [64, 64]
    assert info["trained_dims"] == [2, 3]  # CT crops, and 2D through their slices, DRRs and the X-rays
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("bundle", FINE_TUNE)
@pytest.mark.parametrize("window", ["smoke", "full"])
def test_every_fine_tune_bundle_loads_the_whole_encoder(pretrained_export, bundle, window, tmp_path):
    from monai.bundle import ConfigParser

    from unimiss_monai.handlers import load_pretrained_init

    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "smoke.yaml"))
    if window == "full":  # the tiny widths at the bundle's full-size window: every position embedding is resized
        full = ConfigParser()
        full.read_config(configs(bundle, "train.json"))
        for key in ("roi_size", "image_size", "spatial_size"):
            if key in full.config:
                parser[key] = full[key]
    parser.update({"pretrained_path": str(pretrained_export), "dataset_dir": str(tmp_path), "bundle_root": str(tmp_path)})
    network = parser.get_parsed_content("network_def")
    report = load_pretrained_init(network, parser.get_parsed_content("pretrained_path"))
    encoder = [k for k in network.state_dict() if k.startswith("encoder.")]
    assert report["encoder_loaded"] == len(encoder) > 0, report
    assert not [k for k in report["missing"] if k.startswith("encoder.")]
    if window == "full":
        assert report["encoder_resized"] > 0
    loaded = network.state_dict()
    source = torch.load(pretrained_export, weights_only=True)["model"]
    # the backbone export and the task networks share the ``encoder.`` names: same-shape tensors arrive unchanged
    same = [k for k in encoder if k in source and loaded[k].shape == source[k].shape]
    assert len(same) > len(encoder) // 2 and all(torch.equal(loaded[k], source[k]) for k in same)


def test_an_xray_only_export_gives_ct_networks_an_inflated_not_a_random_3d_branch(sample_set, tmp_path):
    from monai.bundle import ConfigParser

    from unimiss_monai.handlers import load_pretrained_init

    # the sample X-rays alone: the export's 3D tensors are still their random initialisation
    root = sample_set("pretraining") / "pretraining"
    xrays = [{"image": str(root / e["image"])} for e in json.loads((root / "datalist.json").read_text())["xray"]]
    (tmp_path / "datalist.json").write_text(json.dumps({"ct": [], "xray": xrays}))
    _pretrain({"datalist": str(tmp_path / "datalist.json")}, tmp_path / "run")
    export = tmp_path / "run" / "models" / "model.pt"
    payload = torch.load(export, weights_only=True)
    assert payload["info"]["trained_dims"] == [2]
    parser = ConfigParser()
    parser.read_config(configs("unimiss_ct_segmentation", "train.json", "smoke.yaml"))
    parser.update({"pretrained_path": str(export), "dataset_dir": str(tmp_path), "bundle_root": str(tmp_path)})
    network = parser.get_parsed_content("network_def")
    report = load_pretrained_init(network, str(export))
    encoder = [k for k in network.state_dict() if k.startswith("encoder.")]
    assert report["encoder_loaded"] == len(encoder) and report["inflated"]
    assert report["set_aside"] and all(".3d" in k for k in report["set_aside"])
    loaded = network.state_dict()
    stem = "encoder.stem.3d.0.0.conv.weight"
    assert not torch.equal(loaded[stem], payload["model"][stem])  # not the untrained 3D stem


def test_a_fine_tune_records_its_start_and_the_report_says_it(pretrained_export, sample_set, tmp_path):
    """Pretraining export -> fine-tuning -> report: the trained model records whether it began from pretrained
    weights, and the report's prose says so, for a run from the export and one from scratch."""
    from bundle_runner import run_workflow

    from unimiss_monai.report.run_folder import how_trained

    data = str(sample_set("cxr_segmentation"))
    subset = "$monai.data.load_decathlon_datalist(@datalist, True, 'training', base_dir=@data_root)[:2]"
    for start, pretrained in (("pretrained", str(pretrained_export)), ("scratch", None)):
        root = tmp_path / start
        run_workflow("unimiss_cxr_segmentation", ["train.json", "smoke.yaml"], "train", bundle_root=str(root),
                     dataset_dir=data, max_epochs=1, pretrained_path=pretrained, **{"train#dataset#data": subset})
        # the smoke overlay's model, moved where a default run keeps it and the report reads it
        (root / "models" / "smoke" / "model.pt").rename(root / "models" / "model.pt")
        info = torch.load(root / "models" / "model.pt", weights_only=True)["info"]
        assert info["pretrained"] is (pretrained is not None)
        assert how_trained(root).startswith("fine-tuned from the pretrained" if pretrained else "trained from scratch")
