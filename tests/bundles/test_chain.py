"""The seam between pretraining and fine-tuning: the smoke pretraining's export, as written, loads into every
fine-tune bundle's network with no encoder tensor left untrained, position embeddings resized to each bundle's own
window (the geometry of both sides is held to one convention by test_geometry_contract.py)."""

from __future__ import annotations

import pytest
import torch
from bundle_runner import configs

# each test needs a whole smoke pretraining run (the module fixture) and a fine-tune network per bundle
pytestmark = [pytest.mark.slow, pytest.mark.integration]

FINE_TUNE = ["unimiss_ct_segmentation", "unimiss_cxr_segmentation", "unimiss_ct_classification", "unimiss_cxr_classification"]


@pytest.fixture(scope="module")
def pretrained_export(sample_set, tmp_path_factory):
    from monai.bundle import ConfigWorkflow

    out = tmp_path_factory.mktemp("pretraining")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wf = ConfigWorkflow(config_file=configs("unimiss_pretraining", "train.json", "smoke.yaml"), workflow_type="train",
                            dataset_dir=str(sample_set("pretraining")), output_dir=str(out), bundle_root=str(out / "bundle"))
        wf.initialize()
        wf.run()
        wf.finalize()
    finally:
        torch.set_num_threads(threads)
    return out / "models" / "model.pt"


def test_export_records_what_it_is(pretrained_export):
    payload = torch.load(pretrained_export, weights_only=True)
    info = payload["info"]
    assert info["variant"] == "mitplus" and info["spatial_dims"] == [2, 3]
    assert list(info["img_size3d"]) == [16, 64, 64] and list(info["img_size2d"]) == [64, 64]
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
