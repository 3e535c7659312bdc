"""The trainers' losses are moved to the training device with the network: a loss holding tensors (the DINO centre of
pretraining, the classification ``pos_weight``) would otherwise meet the first GPU batch on the CPU. The meta device
stands in for the GPU."""

from __future__ import annotations

import pytest
import torch
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
