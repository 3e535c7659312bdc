"""A weights path given with a quoted ``~`` (``--pretrained_path '~/runs/pre/models/model.pt'``, as pretraining's own
closing hint may print it) is the home folder's file, as the shell would have made it: it was refused as missing."""

from __future__ import annotations

import torch

from unimiss_monai.handlers import load_pretrained_init


def test_pretrained_and_trained_weights_paths_expand_a_leading_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    source = torch.nn.Linear(2, 2)
    (tmp_path / "runs").mkdir()
    torch.save({"model": source.state_dict()}, tmp_path / "runs" / "model.pt")
    pretrained = torch.nn.Linear(2, 2)
    out = load_pretrained_init(pretrained, "~/runs/model.pt")
    assert out["path"] == str(tmp_path / "runs" / "model.pt") and out["loaded"] == 2
    trained = torch.nn.Linear(2, 2)
    load_pretrained_init(trained, "~/runs/model.pt", trained=True, strict=True)
    for net in (pretrained, trained):
        torch.testing.assert_close(net.state_dict(), source.state_dict(), rtol=0, atol=0)
