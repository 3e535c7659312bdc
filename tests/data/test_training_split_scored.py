"""An evaluation of the ``training`` split warns, in one line of its log and on rank 0 only, that the scores are not
held out if the model was trained on that datalist: ``metrics.json`` recorded the split with no shared images, and the
log said nothing. Nothing records which datalist trained a model file, so the warning does not say it as fact."""

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
        f"evaluating the 'training' split of {path}: if the model was trained on this datalist, these images fitted "
        "it, so their scores are not held out and overstate how it does on new images; --eval_split test scores the "
        "held-out ones"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.datalists"):
        assert shared_images(path, "test") == {}
    assert _warnings(caplog) == []  # a held-out split says nothing


@pytest.mark.parametrize("bundle", ["unimiss_ct_classification", "unimiss_cxr_classification",
                                    "unimiss_ct_segmentation", "unimiss_cxr_segmentation"])
@pytest.mark.parametrize("rank", [None, "0", "1"])
def test_every_evaluation_warns_once_when_it_scores_the_training_split(bundle, rank, tmp_path, caplog, monkeypatch):
    # each evaluate.json resolves its report's shared_with from --eval_split: that is where the run warns, once per run
    from monai.bundle import ConfigParser

    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:  # as torchrun starts each rank, before the process group is joined
        monkeypatch.setenv("RANK", rank)
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.png", "label": [1]}]}))
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / bundle / "configs" / name) for name in ("train.json", "evaluate.json")])
    parser.update({"data_root": str(tmp_path), "datalist": str(path), "eval_split": "training"})
    [report] = [i for i, h in enumerate(parser.get("validate#handlers")) if "shared_with" in h]
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.datalists"):
        assert parser.get_parsed_content(f"validate#handlers#{report}#shared_with") == {}
    said = [m for m in _warnings(caplog) if m.startswith("evaluating the 'training' split")]
    assert len(said) == (0 if rank == "1" else 1)
    assert all(f"of {path}: if the model was trained on this datalist" in m for m in said)
