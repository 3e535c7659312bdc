"""An evaluation of the ``training`` split warns, in one line of its log, that the scores are of images the model was
trained on: ``metrics.json`` recorded the split with no shared images, and the log said nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from unimiss_monai.data.datalists import shared_images

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_scoring_the_training_split_is_warned_of(tmp_path, caplog):
    path = tmp_path / "datalist.json"
    item = {"image": "a.png", "label": [1]}
    path.write_text(json.dumps({"training": [item], "test": [{**item, "image": "b.png"}]}))
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.datalists"):
        assert shared_images(path, "training") == {}
    assert _warnings(caplog) == [
        f"evaluating the 'training' split of {path}: the model was trained on these images, so their scores are not "
        "held out and overstate how it does on new images; --eval_split test scores the held-out ones"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.datalists"):
        assert shared_images(path, "test") == {}
    assert _warnings(caplog) == []  # a held-out split says nothing


@pytest.mark.parametrize("bundle", ["unimiss_ct_classification", "unimiss_cxr_classification",
                                    "unimiss_ct_segmentation", "unimiss_cxr_segmentation"])
def test_every_evaluation_asks_of_the_split_it_scores(bundle):
    # the warning lives where each evaluate.json resolves its --eval_split for the report it writes
    text = (BUNDLES / bundle / "configs" / "evaluate.json").read_text()
    assert "unimiss_monai.data.datalists.shared_images(@datalist, @eval_split" in text
