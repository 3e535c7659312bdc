"""package-bundle loads the weights into the network the packaged configs build, without TorchScript: weights trained
with an overlay (smoke.yaml: tiny widths) are refused against the default configs in one line naming the file and
the fix, and packaged with ``--overlay``, which the release records and the download prints."""

from __future__ import annotations

import io
import json
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from test_package_inputs import _conv_bundle

from unimiss_monai.release.network_fit import bundle_network
from unimiss_monai.release.package import build_release, package_bundle

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
PRETRAINING = BUNDLES / "unimiss_pretraining"
CXR = BUNDLES / "unimiss_cxr_classification"


def _released_info(zip_path: str, name: str, weights: str = "models/model.pt") -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return torch.load(io.BytesIO(zf.read(f"{name}/{weights}")), weights_only=True)["info"]


def test_smoke_pretraining_weights_need_their_overlay(tiny_export, tmp_path, capsys):
    out = tmp_path / "dist"
    with pytest.raises(ValueError) as err:
        package_bundle(str(PRETRAINING), weights=str(tiny_export), out=str(out), training="x")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"package-bundle: the weights {tiny_export} do not fit network_def of "
                              f"{PRETRAINING / 'configs' / 'train.json'} at variant mitplus (the weights' own): weights "
                              "are mitplus (embed_dims (16, 32, 32, 64)")
    assert message.endswith("; package them with the overlay they were trained with (--overlay smoke.yaml after a "
                            "smoke training), or pass weights of this network")
    assert not out.exists()
    # a pretraining network ships its export, which has nothing to trace
    with pytest.raises(ValueError, match=r"^package-bundle --torchscript: network_def of .*train\.json \+ "
                                         r"configs/smoke\.yaml at variant mitplus .* is a StudentTeacher, .*; package "
                                         "without --torchscript$"):
        package_bundle(str(PRETRAINING), weights=str(tiny_export), out=str(out), training="x", overlay="smoke.yaml",
                       torchscript=True)
    assert not out.exists()

    from unimiss_monai.cli import main
    from unimiss_monai.release.download import download

    main(["package-bundle", str(PRETRAINING), "--weights", str(tiny_export), "--out", str(out), "--training", "x",
          "--overlay", "smoke.yaml"])
    (entry,) = json.loads((out / "model_info.json").read_text()).values()
    assert _released_info(str(out / entry["source"]), "unimiss_pretraining")["overlays"] == ["configs/smoke.yaml"]
    capsys.readouterr()
    got = download("unimiss_pretraining", index=str(out), bundle_dir=str(tmp_path / "b"),
                   cache_dir=str(tmp_path / "cache"), progress=False)
    assert got["weights"]["overlays"] == ["configs/smoke.yaml"]
    assert "variant mitplus, fits the configs with configs/smoke.yaml only, trained: x" in capsys.readouterr().out


def test_a_smoke_trained_fine_tuned_model_needs_its_overlay(tmp_path):
    """What a smoke training of a fine-tuning bundle saves (CheckpointInfo: bundle, variant, settings)."""
    smoke = bundle_network(CXR, ["configs/smoke.yaml"])
    info = {"bundle": CXR.name, "variant": "mitplus", "settings": smoke.parser.get_parsed_content("model_settings"),
            "training": "smoke overlay on the sample set"}
    weights = tmp_path / "model.pt"
    torch.save({"model": smoke.net.state_dict(), "info": info}, weights)
    with pytest.raises(ValueError) as err:
        package_bundle(str(CXR), weights=str(weights), out=str(tmp_path / "dist"))
    message = str(err.value)
    assert "\n" not in message and message.startswith(
        f"package-bundle: the weights {weights} do not fit network_def of {CXR / 'configs' / 'inference.json'} at "
        "variant mitplus (the weights' own): ")
    assert "--overlay smoke.yaml" in message and not (tmp_path / "dist").exists()
    res = package_bundle(str(CXR), weights=str(weights), out=str(tmp_path / "dist"), overlay="configs/smoke.yaml")
    # shipped where inference.json + smoke.yaml read the smoke model (its ckpt_dir), and recorded as such
    info = _released_info(res["zip"], CXR.name, "models/smoke/model.pt")
    assert info["overlays"] == ["configs/smoke.yaml"] and info["weights_path"] == "models/smoke/model.pt"


def test_weights_trained_on_other_input_settings_are_refused(tmp_path):
    """Weights that load, yet recorded another input size than the configs prepare: inference would refuse them."""
    full = bundle_network(CXR)
    weights = tmp_path / "model.pt"
    info = {"bundle": CXR.name, "variant": "mitplus", "settings": {"roi_size": [256, 256], "luminance": False},
            "training": "x"}
    torch.save({"model": full.net.state_dict(), "info": info}, weights)
    with pytest.raises(ValueError, match=r"^package-bundle: the weights \S+model\.pt do not fit network_def of .*: they "
                                         r"were trained with other input settings: roi_size \[256, 256\] \(these "
                                         r"configs: \[224, 224\]\); package them with the overlay"):
        package_bundle(str(CXR), weights=str(weights), out=str(tmp_path / "dist"))
    assert not (tmp_path / "dist").exists()


def test_weights_of_classes_in_another_order_are_refused(tmp_path):
    """Weights that load, yet name their outputs otherwise than the configs: the released bundle's inference would
    refuse them (released, each probability would have gone by another finding's name)."""
    full = bundle_network(CXR)
    names = full.parser.get_parsed_content("class_names")
    weights = tmp_path / "model.pt"
    info = {"bundle": CXR.name, "variant": "mitplus", "classes": names[::-1], "training": "x",
            "settings": full.parser.get_parsed_content("model_settings")}
    torch.save({"model": full.net.state_dict(), "info": info}, weights)
    expected = (rf"^package-bundle: the weights \S+model\.pt do not fit network_def of .*: they were trained for the "
                rf"same classes in another order \({names[::-1]!r}\) where these configs name {names!r}")
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        package_bundle(str(CXR), weights=str(weights), out=str(tmp_path / "dist"))
    assert not (tmp_path / "dist").exists()


def test_an_overlay_the_release_does_not_carry_is_refused(tiny_export, tmp_path):
    elsewhere = tmp_path / "smoke.yaml"
    elsewhere.write_text((PRETRAINING / "configs" / "smoke.yaml").read_text())
    for overlay in ("nothere.yaml", str(elsewhere), "docs/README.md"):
        with pytest.raises(ValueError, match=rf"^package-bundle: --overlay {overlay} is not a config file of "
                                             rf"{PRETRAINING / 'configs'}; pass one of its overlays"):
            package_bundle(str(PRETRAINING), weights=str(tiny_export), out=str(tmp_path / "dist"), training="x",
                           overlay=overlay)
    with pytest.raises(ValueError, match=r"^package-bundle: --overlay needs weights \(--weights\)$"):
        package_bundle(str(BUNDLES / "unimiss_drr_generation"), out=str(tmp_path / "dist"), overlay="demo.yaml")
    assert not (tmp_path / "dist").exists()


class _NoForward(torch.nn.Conv2d):
    """A network_def whose forward must not run: the check builds and loads, nothing more."""

    def forward(self, x):
        raise AssertionError("package-bundle ran the network")


def test_the_check_builds_and_loads_without_a_forward_pass(tmp_path, monkeypatch):
    module = types.ModuleType("no_forward_network_def")
    module.Conv = _NoForward
    monkeypatch.setitem(sys.modules, module.__name__, module)
    bundle = _conv_bundle(tmp_path / "conv", f"{module.__name__}.Conv")
    conv = torch.nn.Conv2d(1, 2, 3)
    res = build_release(bundle, {"model": conv.state_dict(), "info": {"training": "a test"}}, tmp_path / "dist")
    with zipfile.ZipFile(res["zip"]) as zf:
        assert "conv/models/model.pt" in zf.namelist() and "conv/models/model.ts" not in zf.namelist()
