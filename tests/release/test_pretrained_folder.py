"""pretrained_path may name a pretraining bundle folder (as downloaded): its models/model.pt is loaded."""

from __future__ import annotations

import shutil

import pytest
import torch

from unimiss_monai.handlers.pretrained_init import load_pretrained_init
from unimiss_monai.networks import UniMissClassifier, tiny_overrides


def test_bundle_folder_loads_its_weights(tiny_export, tmp_path):
    folder = tmp_path / "unimiss_pretraining"
    (folder / "models").mkdir(parents=True)
    shutil.copy(tiny_export, folder / "models" / "model.pt")
    a = UniMissClassifier(2, 1, 2, variant="mitplus", img_size=(64, 64), **tiny_overrides("mitplus"))
    b = UniMissClassifier(2, 1, 2, variant="mitplus", img_size=(64, 64), **tiny_overrides("mitplus"))
    rep = load_pretrained_init(a, str(folder))
    load_pretrained_init(b, str(folder / "models" / "model.pt"))
    assert rep["path"].endswith("models/model.pt") and rep["encoder_loaded"] > 0
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items() if k.startswith("encoder."))
    with pytest.raises(FileNotFoundError, match="is a folder without models/model.pt"):
        load_pretrained_init(a, str(tmp_path))


def test_unfinished_run_folder_and_the_word_null(tiny_export, tmp_path, caplog):
    net = UniMissClassifier(2, 1, 2, variant="mitplus", img_size=(64, 64), **tiny_overrides("mitplus"))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint.pt").write_bytes(b"")  # a killed run: a checkpoint, no export yet
    with pytest.raises(FileNotFoundError, match="has not finished .* resume it to its end"):
        load_pretrained_init(net, str(run))
    # "--pretrained_path null" arrives as the word: training from scratch, as with null in a config
    caplog.set_level("INFO", logger="unimiss_monai.handlers.pretrained_init")
    for word in ("null", "None"):
        assert load_pretrained_init(net, word)["path"] is None
    assert "training from scratch" in caplog.text
