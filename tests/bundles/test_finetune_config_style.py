"""The fine-tune bundles' configs read as data: every ``$`` expression is one short line, they use the package's
current import paths (no deprecated names), booleans are parsed once, and the smoke widths come from one preset."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from bundle_runner import BUNDLES

FINETUNE = ["unimiss_ct_classification", "unimiss_ct_segmentation", "unimiss_cxr_classification",
            "unimiss_cxr_segmentation"]
# modules whose names moved to their room: configs must name the new place
OLD_PATHS = re.compile(r"unimiss_monai\.(engines\.(classification|segmentation|tolerant|saliency|attention)"
                       r"|data\.xray\.(AsGrey|CheckMultiLabel|SaveOverlay|SkipFailed|InferenceSummary)"
                       r"|data\.totalsegmentator\.(Select|CheckSegmentation)|engines\.SegmentationReport)")


def _files(bundle: str) -> list:
    return sorted(p for p in (BUNDLES / bundle / "configs").iterdir() if p.suffix in (".json", ".yaml"))


def _load(path):
    return yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())


def _strings(node, where=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{where}#{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{where}#{i}")
    elif isinstance(node, str):
        yield where, node


@pytest.mark.parametrize("bundle", FINETUNE)
def test_expressions_are_short_and_paths_current(bundle):
    long, old, as_bool_calls = [], [], []
    for path in _files(bundle):
        for where, text in _strings(_load(path)):
            if text.startswith("$") and len(text) > 80:
                long.append(f"{path.name}{where} ({len(text)} chars)")
            if OLD_PATHS.search(text):
                old.append(f"{path.name}{where}: {text}")
            if "as_bool(" in text and not re.fullmatch(r"#\w+_flag", where):
                as_bool_calls.append(f"{path.name}{where}")
    assert not long, "name a function or a config id instead of: " + ", ".join(long)
    assert not old, "deprecated import paths: " + "; ".join(old)
    assert not as_bool_calls, "parse a boolean once, into <id>_flag: " + ", ".join(as_bool_calls)


@pytest.mark.parametrize("bundle", FINETUNE)
def test_smoke_widths_come_from_the_preset(bundle):
    smoke = _load(BUNDLES / bundle / "configs" / "smoke.yaml")
    widths = {k: v for k, v in smoke.items() if k.startswith("network_def#")}
    # no literal widths: the one "smoke" preset of unimiss_monai.networks decides them
    assert widths == {"network_def#preset": "smoke"}, widths


@pytest.mark.parametrize("bundle", FINETUNE)
def test_training_shows_one_progress_bar(bundle):
    # long work shows progress: one bar over the whole run with its ETA, the last training handler (so the multi-GPU
    # overlays' rank filter keeps it on rank 0 only), and no overlay adds a second
    handlers = _load(BUNDLES / bundle / "configs" / "train.json")["train"]["handlers"]
    bars = [h for h in handlers if isinstance(h, dict) and h.get("_target_", "").endswith("RunProgress")]
    assert len(bars) == 1 and handlers[-1] is bars[0]
    assert not any("RunProgress" in p.read_text() for p in _files(bundle) if p.name != "train.json")


@pytest.mark.parametrize("bundle", FINETUNE)
def test_the_trained_model_records_the_settings_evaluation_and_inference_check(bundle, tmp_path):
    from monai.bundle import ConfigParser

    def parsed(*names):
        parser = ConfigParser()
        parser.read_config([str(BUNDLES / bundle / "configs" / n) for n in names])
        parser.update({"bundle_root": str(tmp_path), "dataset_dir": str(tmp_path)})
        return parser

    train = parsed("train.json")
    saved = [s for w, s in _strings(_load(BUNDLES / bundle / "configs" / "train.json")) if w.endswith("#info#settings")]
    assert saved == ["@model_settings"]  # the CheckpointInfo of the best model
    named = {s for w, s in _strings(_load(BUNDLES / bundle / "configs" / "train.json")) if w.endswith("#info#bundle")}
    assert named == {bundle}
    settings = train.get_parsed_content("model_settings")
    assert settings and all(v is not None for v in settings.values())
    for names in (("inference.json",), ("train.json", "evaluate.json")):
        config = parsed(*names)
        assert config["load_model"]["settings"] == "@model_settings", names
        assert config["load_model"]["bundle"] == bundle, names  # the name its trained models record (info bundle)
        assert config.get_parsed_content("model_settings") == settings, names  # the same ids, the same defaults


@pytest.mark.parametrize("bundle", FINETUNE)
def test_evaluation_and_inference_record_the_model_they_load_and_the_split_they_score(bundle):
    """The report tells results of the model in a folder from those of another by the checksum they record, and
    held-out scores from others by the split: the handler that writes them must be given the very file
    ``load_model`` loads and the split the evaluation's dataset reads."""
    for name, handler in (("evaluate.json", ("ClassificationReport", "SegmentationReport")),
                          ("inference.json", ("InferenceSummary",))):
        config = _load(BUNDLES / bundle / "configs" / name)
        writers = [h for w, h in _find_targets(config) if h["_target_"].rsplit(".", 1)[-1] in handler]
        assert len(writers) == 1, (name, writers)
        assert writers[0].get("model") == config["load_model"]["path"] == "@ckpt_path", name
        if name == "evaluate.json":  # and the split it scores, which only for "test" is held out
            assert writers[0].get("split") == "@eval_split" and "eval_split" in config, name


def _find_targets(node, where=""):
    if isinstance(node, dict):
        if "_target_" in node:
            yield where, node
        for k, v in node.items():
            yield from _find_targets(v, f"{where}#{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _find_targets(v, f"{where}#{i}")
