"""``save_torch`` writes what ``torch.load(weights_only=True)`` reads back the same: nested containers, named tuples and
a module's state dict with its ``_metadata`` (the version record ``load_state_dict`` reads)."""

from __future__ import annotations

from collections import namedtuple

import torch

from unimiss_monai.data.writers import _on_cpu, save_torch


def test_a_state_dict_round_trips_with_its_metadata(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = net.state_dict()
    save_torch({"model": state, "rng": [torch.get_rng_state()], "epoch": 3}, tmp_path / "m.pt")
    back = torch.load(tmp_path / "m.pt", weights_only=True)
    assert back["epoch"] == 3 and torch.equal(back["rng"][0], torch.get_rng_state())
    assert back["model"]._metadata == state._metadata
    assert all(torch.equal(back["model"][k], v) for k, v in state.items())
    net.load_state_dict(back["model"])


def test_cpu_tensors_are_not_copied_and_containers_keep_their_kind():
    pair = namedtuple("pair", "a b")
    t = torch.ones(2)
    out = _on_cpu({"x": (t, [t]), "p": pair(t, 1)})
    assert out["x"][0] is t and out["x"][1][0] is t and isinstance(out["x"], tuple) and isinstance(out["x"][1], list)
    assert isinstance(out["p"], pair) and out["p"].a is t and out["p"].b == 1
