"""Each fine-tune bundle's training checkpoint records the items it trains on, so that a run of other data does not
resume it, and its optimiser's settings, so that a resume asking for others says it keeps them (see
tests/handlers/test_training_checkpoint_data.py and _settings.py for what the records do), and so does every training
bundle's its seed, so that a resume with another one says so; and what chooses each fine-tune's best model (validation
items, pretrained weights, key metric), so that a rerun of a finished run choosing otherwise does not publish its
model."""

from __future__ import annotations

import pytest
from bundle_runner import configs

from unimiss_monai.handlers import TrainingCheckpoint

SETS = {"unimiss_ct_segmentation": "ct_segmentation", "unimiss_cxr_segmentation": "cxr_segmentation",
        "unimiss_ct_classification": "ct_classification", "unimiss_cxr_classification": "cxr_classification"}


@pytest.mark.parametrize("bundle", sorted(SETS))
def test_the_training_checkpoint_records_the_training_items(bundle, sample_set, tmp_path):
    from monai.bundle import ConfigParser

    from unimiss_monai.data.samples import find_dataset

    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "smoke.yaml"))
    parser.update({"dataset_dir": find_dataset(str(sample_set(SETS[bundle])), SETS[bundle]),
                   "bundle_root": str(tmp_path), "output_dir": str(tmp_path / "out"), "seed": 7})
    handlers = parser.get_parsed_content("train#handlers")
    checkpoint = next(h for h in handlers if isinstance(h, TrainingCheckpoint))
    items = parser.get_parsed_content("train#dataset#data")
    assert checkpoint.data is not None and len(checkpoint.data) == len(items) > 0
    assert [i["image"] for i in checkpoint.data] == [str(i["image"]) for i in items]
    # and the optimiser's settings, which a resumed run keeps whatever it asks for (then said in a warning)
    assert checkpoint.optimiser_settings == {k: float(parser.get_parsed_content(k))
                                             for k in ("learning_rate", "weight_decay", "layer_decay")}
    assert checkpoint.seed == 7


@pytest.mark.parametrize("bundle", sorted(SETS))
def test_the_training_checkpoint_records_what_chooses_the_best_model(bundle, sample_set, tmp_path):
    # a finished run never published is published on its rerun only where these are the same (test_unpublished_...)
    from monai.bundle import ConfigParser

    from unimiss_monai.data.samples import find_dataset

    weights = tmp_path / "pretrained.pt"
    weights.write_bytes(b"a pretrained backbone")
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "smoke.yaml"))
    parser.update({"dataset_dir": find_dataset(str(sample_set(SETS[bundle])), SETS[bundle]),
                   "bundle_root": str(tmp_path), "output_dir": str(tmp_path / "out"), "pretrained_path": str(weights),
                   "pretrained_report": {"path": str(weights)}})  # the file is not loaded: only recorded
    handlers = parser.get_parsed_content("train#handlers")
    choice = next(h for h in handlers if isinstance(h, TrainingCheckpoint)).best_model_choice
    items = parser.get_parsed_content("validate#dataset#data")
    assert len(choice["validation"]) == len(items) > 0
    assert [i["image"] for i in choice["validation"]] == [str(i["image"]) for i in items]
    assert choice["pretrained"] == {"file": str(weights.resolve()), "size": weights.stat().st_size,
                                    "mtime_ns": weights.stat().st_mtime_ns}
    assert choice["key_metric"] == next(iter(parser.get("validate#key_metric")))


@pytest.mark.parametrize("bundle, overlays", [*((b, ()) for b in sorted(SETS)), ("unimiss_pretraining", ()),
                                               ("unimiss_pretraining", ("recipe_intra_inter.yaml",))])
def test_the_training_checkpoint_is_given_the_runs_seed(bundle, overlays):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", *overlays))  # an overlay may replace the handlers
    handlers = parser.get("train#handlers")
    [checkpoint] = [h for h in handlers if h.get("_target_") == "unimiss_monai.handlers.TrainingCheckpoint"]
    assert checkpoint["seed"] == "@seed" and isinstance(parser.get("seed"), int)
