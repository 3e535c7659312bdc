"""``bench-infer --weights`` loads the bundle's trained model as the bundle's inference does (its ``load_model``): a
file that bundle inference refuses is refused in the same one line, before anything is timed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unimiss_monai.benchmarks.inference import bench_infer, load_paths
from unimiss_monai.networks.pretrained import backbone_info

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unimiss_ct_segmentation"
# the smoke network on windows of 16x64x64 (as test_inference_overlay.py): a whole "CT" takes about a second
SMOKE = {"network_def#preset": "smoke", "roi_size": [16, 64, 64]}
SETTINGS = {"pixdim": [1.5, 1.5, 2.5], "roi_size": [16, 64, 64]}
CLASSES = ["liver", "spleen", "kidney_right", "kidney_left", "stomach", "pancreas", "lung", "heart", "aorta"]


def _network() -> torch.nn.Module:
    return load_paths(BUNDLE, None, "cpu", SMOKE).get_parsed_content("network")


def _model(path: Path, **info) -> Path:
    """A trained model of the smoke network at ``path``, with ``info`` as the bundle's training records it."""
    torch.save({"model": _network().state_dict(), "info": {"bundle": "unimiss_ct_segmentation", **info}}, path)
    return path


def _bundle_refusal(path: Path) -> str:
    """The bundle's own inference load (``load_model``) of ``path``: the line it refuses the file with."""
    parser = load_paths(BUNDLE, None, "cpu", {**SMOKE, "ckpt_path": str(path)})
    with pytest.raises(Exception) as err:
        parser.get_parsed_content("load_model")
    cause = err.value
    while cause.__cause__ is not None:  # the config's instantiation wraps what the loader raised
        cause = cause.__cause__
    return str(cause)


def _bench(path: Path, tmp_path: Path) -> dict:
    return bench_infer(shape=(20, 72, 72), weights=str(path), swinunetr=False, overrides=SMOKE,
                       out=str(tmp_path / "bench.json"))


def test_a_trained_model_of_the_bundle_is_loaded_and_timed(tmp_path):
    path = _model(tmp_path / "model.pt", classes=CLASSES, settings=SETTINGS)
    result = _bench(path, tmp_path)
    assert f"; weights {path}. " in result["setup"] and (tmp_path / "bench.json").is_file()


def test_a_model_trained_at_other_input_settings_is_refused_as_bundle_inference_refuses_it(tmp_path):
    # the weights fit the network, so a strict load alone would time them; their labels would be wrong
    other = {**SETTINGS, "roi_size": [32, 64, 64]}
    path = _model(tmp_path / "model.pt", classes=CLASSES, settings=other)
    expected = _bundle_refusal(path)
    assert expected.startswith(f"the trained model {path} was trained with other input settings: ")
    with pytest.raises(ValueError) as err:
        _bench(path, tmp_path)
    assert str(err.value) == expected and "\n" not in expected
    assert not (tmp_path / "bench.json").exists()


def test_a_pretraining_export_is_refused_as_bundle_inference_refuses_it(tmp_path):
    encoder = _network().encoder
    path = tmp_path / "export.pt"
    torch.save({"model": encoder.state_dict(), "info": backbone_info(encoder)}, path)
    expected = _bundle_refusal(path)
    assert "it is a pretraining export" in expected and "pretrained checkpoint" not in expected
    with pytest.raises(ValueError) as err:
        _bench(path, tmp_path)
    assert str(err.value) == expected
    assert not (tmp_path / "bench.json").exists()


def test_a_model_of_other_classes_is_refused_as_bundle_inference_refuses_it(tmp_path):
    # the same nine classes in another order: the weights fit, every organ would go by another's name
    path = _model(tmp_path / "model.pt", classes=CLASSES[::-1], settings=SETTINGS)
    expected = _bundle_refusal(path)
    assert "the same classes in another order" in expected
    with pytest.raises(ValueError) as err:
        _bench(path, tmp_path)
    assert str(err.value) == expected and not (tmp_path / "bench.json").exists()
