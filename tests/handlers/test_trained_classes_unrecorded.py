"""A trained model that records no class names (a bare state dict, or a file of a version before they were recorded)
cannot have its output order checked against the run's names: the run says so in a warning, where it said nothing and
wrote every probability under another class's name when the names came in another order."""

from __future__ import annotations

import logging

import pytest
import torch

from unimiss_monai.handlers import load_pretrained_init


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "records no class" in r.getMessage()]


def test_a_model_without_class_names_is_loaded_with_a_warning_that_names_the_order_used(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="unimiss_monai")
    trained = torch.nn.Linear(3, 2)
    bare, recorded = tmp_path / "bare.pt", tmp_path / "model.pt"
    torch.save(trained.state_dict(), bare)
    torch.save({"model": trained.state_dict(), "info": {"classes": ["nodule", "cardiomegaly"]}}, recorded)
    load_pretrained_init(torch.nn.Linear(3, 2), str(bare), trained=True, strict=True,
                         classes=["cardiomegaly", "nodule"])
    (line,) = _warnings(caplog)
    assert line == (f"the trained model {bare} records no class names, so their order cannot be checked: its outputs "
                    "are named ['cardiomegaly', 'nodule'], in this order, as --class_names gives them; make sure the "
                    "model was trained with these")
    caplog.clear()
    load_pretrained_init(torch.nn.Linear(3, 2), str(recorded), trained=True, classes=["nodule", "cardiomegaly"])
    assert _warnings(caplog) == []  # recorded and the same: nothing to say
    with pytest.raises(ValueError, match="the same classes in another order"):  # recorded and swapped: refused
        load_pretrained_init(torch.nn.Linear(3, 2), str(recorded), trained=True, classes=["cardiomegaly", "nodule"])
    load_pretrained_init(torch.nn.Linear(3, 2), str(bare), trained=True)  # a run that names no classes: no warning
    assert _warnings(caplog) == []
