"""What follows the bundles' ``device``: the trainers' losses are moved there with the network (a loss holding tensors,
the DINO centre of pretraining or the classification ``pos_weight``, would otherwise meet the first GPU batch on the
CPU; the meta device stands in for the GPU), and mixed precision is on exactly when that device is a GPU (a run
told ``--device cpu`` on a GPU machine does not get CUDA autocast)."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from bundle_runner import BUNDLES, configs

CASES = [
    ("unimiss_pretraining", ("train.json",), {}),
    ("unimiss_pretraining", ("train.json", "unimiss.yaml"), {}),
    ("unimiss_ct_classification", ("train.json",), {"pos_weight": "$torch.ones(2)"}),
    ("unimiss_cxr_classification", ("train.json",), {"pos_weight": "$torch.ones(3)"}),
]


@pytest.mark.parametrize("bundle, files, overrides", CASES, ids=[f"{b}:{'+'.join(f)}" for b, f, _ in CASES])
def test_trainer_loss_lives_on_the_training_device(bundle, files, overrides):
    parser = ConfigParser()
    parser.read_config(configs(bundle, *files))
    parser.update({"bundle_root": str(BUNDLES / bundle), "device": "$torch.device('meta')", **overrides})
    loss = parser.get_parsed_content("train#trainer#loss_function")
    tensors = dict(loss.state_dict())
    assert tensors, f"{bundle}: the loss holds no tensor; this test would check nothing"
    assert {t.device.type for t in tensors.values()} == {"meta"}, {k: t.device for k, t in tensors.items()}


AMP = [("unimiss_ct_classification", "train.json"), ("unimiss_cxr_classification", "train.json")] + [
    (f"unimiss_{m}_segmentation", c) for m in ("ct", "cxr") for c in ("train.json", "inference.json")]


@pytest.mark.parametrize("bundle, config", AMP, ids=[f"{b}:{c}" for b, c in AMP])
def test_mixed_precision_follows_the_device(bundle, config):
    for device, expected in (("cpu", False), ("$torch.device('cpu')", False), ("cuda:1", True), ("$torch.device('cuda')", True)):
        parser = ConfigParser()
        parser.read_config(configs(bundle, config))
        parser.update({"bundle_root": str(BUNDLES / bundle), "device": device})
        assert parser.get_parsed_content("amp") is expected, (device, parser.get_parsed_content("amp"))
