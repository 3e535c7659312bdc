"""package-bundle --torchscript: the bundle's network_def is built once, checked against the weights, and that same
instance is traced and shipped with the bundle's metadata and config."""

from __future__ import annotations

import io
import json
import sys
import types
import zipfile

import torch

from test_package_inputs import _conv_bundle

from unimiss_monai.release.package import build_release


class _CountedConv(torch.nn.Conv2d):
    """A 2D convolution that counts its constructions (a real network_def builds a whole UniMiSS network each time)."""

    built = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        type(self).built += 1


def test_network_def_is_built_once(tmp_path, monkeypatch):
    # the config's _target_ names a module of this test, so every construction of network_def is counted
    module = types.ModuleType("counted_network_def")
    module.Conv = _CountedConv
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(_CountedConv, "built", 0)
    bundle = _conv_bundle(tmp_path / "conv", f"{module.__name__}.Conv")
    conv = torch.nn.Conv2d(1, 2, 3)
    res = build_release(bundle, {"model": conv.state_dict(), "info": {"training": "a test"}}, tmp_path / "dist",
                        torchscript=True)
    assert _CountedConv.built == 1
    with zipfile.ZipFile(res["zip"]) as zf:
        extra = {"metadata.json": "", "inference.json": ""}
        traced = torch.jit.load(io.BytesIO(zf.read("conv/models/model.ts")), _extra_files=extra)
    x = torch.rand(1, 1, 8, 8)
    assert torch.allclose(traced(x), conv(x))  # the one instance carries the packaged weights
    # what monai.bundle readers of a model.ts expect beside the network: the bundle's metadata and config
    assert json.loads(extra["metadata.json"])["version"] == "0.1.0"
    assert json.loads(extra["inference.json"])["network_def"]["_target_"] == f"{module.__name__}.Conv"
