"""BestModelSaver keeps the best model of a run in its own folder (atomic, finite, resumable); PublishBestModel moves
it to models/model.pt only when the run finishes, keeping the model it replaces."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine

from unimiss_monai.handlers import BestModelSaver, CheckpointInfo, PublishBestModel
from unimiss_monai.utils.hashing import sha256_file


def _validation(score: float) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"acc": score}
    return engine


def _saver(tmp_path, net) -> BestModelSaver:
    return BestModelSaver(tmp_path / "run" / "checkpoints", {"model": net, "info": CheckpointInfo(bundle="b")}, key_metric_name="acc")


def _validate(saver: BestModelSaver, net: torch.nn.Module, value: float, score: float) -> None:
    torch.nn.init.constant_(net.weight, value)
    saver.metrics_completed(_validation(score))


def _saved_weight(saver: BestModelSaver) -> float:
    ckpt = torch.load(saver.path, weights_only=True)
    assert ckpt["info"] == {"bundle": "b"}
    return float(ckpt["model"]["weight"][0, 0])


def test_keeps_the_best_score_and_resumes_its_tracking(tmp_path):
    net = torch.nn.Linear(2, 1)
    saver = _saver(tmp_path, net)
    for value, score in [(1.0, 0.5), (2.0, 0.3), (3.0, 0.7), (4.0, 0.6)]:
        _validate(saver, net, value, score)
    assert _saved_weight(saver) == 3.0 and saver.saved
    state = saver.state_dict()
    assert list(state) == ["_saved", "sha256"] and [p for p, _ in state["_saved"]] == [0.7]
    assert state["sha256"] == sha256_file(saver.path)  # the file of the best model, recorded for a rerun's publish
    # a resumed run's saver replaces the file only with a better model
    resumed = _saver(tmp_path, net)
    resumed.load_state_dict(state)
    _validate(resumed, net, 5.0, 0.65)
    assert _saved_weight(resumed) == 3.0
    _validate(resumed, net, 6.0, 0.8)
    assert _saved_weight(resumed) == 6.0
    assert [p.name for p in saver.path.parent.iterdir()] == ["best_model.pt"]  # no temporary files left


def test_a_non_finite_model_is_never_saved(tmp_path):
    net = torch.nn.Linear(2, 1)
    saver = _saver(tmp_path, net)
    _validate(saver, net, 1.0, 0.5)
    before = saver.path.read_bytes()
    torch.nn.init.constant_(net.bias, float("nan"))
    with pytest.raises(FloatingPointError, match=r"not saving .*best_model.pt: model.bias holds NaN or Inf"):
        saver.metrics_completed(_validation(0.9))
    assert saver.path.read_bytes() == before


def test_publish_keeps_the_previous_model(tmp_path):
    net = torch.nn.Linear(2, 1)
    saver = _saver(tmp_path, net)
    target = tmp_path / "models" / "model.pt"
    target.parent.mkdir()
    target.write_bytes(b"the model of an earlier run")
    publish = PublishBestModel(saver, target)
    _validate(saver, net, 2.0, 0.5)
    publish(Engine(lambda e, b: None))
    assert target.read_bytes() == saver.path.read_bytes()
    assert target.with_name("model.pt.prev").read_bytes() == b"the model of an earlier run"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt", "model.pt.prev"]


def test_publish_without_a_best_model_or_with_a_diverged_one_leaves_the_target(tmp_path, caplog):
    net = torch.nn.Linear(2, 1)
    saver = _saver(tmp_path, net)
    target = tmp_path / "model.pt"
    target.write_bytes(b"good")
    publish = PublishBestModel(saver, target)
    saver.path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"weight": torch.ones(1)}}, saver.path)  # a stale file of an earlier run in the same folder
    with caplog.at_level(logging.WARNING):
        publish(Engine(lambda e, b: None))
    assert target.read_bytes() == b"good" and "no best model was saved" in caplog.text
    _validate(saver, net, 1.0, 0.5)
    torch.save({"model": {"weight": torch.tensor([float("inf")])}}, saver.path)  # e.g. written by another tool
    with pytest.raises(FloatingPointError, match=r"model.weight holds NaN or Inf"):
        publish(Engine(lambda e, b: None))
    assert target.read_bytes() == b"good" and not target.with_name("model.pt.prev").exists()
    engine = Engine(lambda e, b: None)
    PublishBestModel(object(), target).attach(engine)
    assert "not the run's BestModelSaver: nothing will be published" in caplog.text
    engine.run([0])
    assert target.read_bytes() == b"good"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_score_chooses_no_model(tmp_path, bad):
    """A NaN score would be saved first and never beaten (no score compares greater than NaN)."""
    net = torch.nn.Linear(2, 1)
    saver = _saver(tmp_path, net)
    with pytest.raises(ValueError, match=f"validation acc is {bad}.*ROC AUC needs positive and negative"):
        _validate(saver, net, 1.0, bad)
    assert not saver.saved and not saver.path.exists()
    _validate(saver, net, 2.0, 0.4)  # a defined score afterwards is saved as usual
    assert saver.saved and _saved_weight(saver) == 2.0


def test_publish_refuses_a_model_chosen_at_a_nan_score(tmp_path):
    """A run resumed from a checkpoint that recorded a model saved at a NaN score publishes nothing."""
    net = torch.nn.Linear(2, 1)
    saver = _saver(tmp_path, net)
    _validate(saver, net, 1.0, 0.5)
    saver.load_state_dict({"_saved": [(float("nan"), saver.path.name)]})
    target = tmp_path / "models" / "model.pt"
    with pytest.raises(ValueError, match="key metric of nan"):
        PublishBestModel(saver, target)(Engine(lambda e, b: None))
    assert not target.exists()
