"""A null ``pretrained_path`` comes from the configuration (smoke.yaml and demo.yaml set it, or the default found no
published weights): the one log line says so and how to start from weights, rather than "no pretrained_path given"."""

from __future__ import annotations

import logging

import torch

from unimiss_monai.handlers import load_pretrained_init


def test_null_pretrained_path_names_the_configuration_and_the_fix(caplog):
    caplog.set_level(logging.INFO, logger="unimiss_monai")
    out = load_pretrained_init(torch.nn.Linear(2, 2), None)
    assert out["path"] is None and out["loaded"] == 0
    (message,) = [r.getMessage() for r in caplog.records if "training from scratch" in r.getMessage()]
    assert "\n" not in message
    assert "pretrained_path is null in this configuration" in message and "smoke.yaml" in message
    assert "--pretrained_path" in message and "no pretrained_path given" not in message
