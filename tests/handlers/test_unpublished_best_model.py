"""A finished fine-tuning run whose best model never reached ``models/model.pt`` (killed after its last checkpoint,
or its copy failed on a full disk) publishes that model when run again, without training; a run whose publish did
happen (even if ``models/model.pt`` was deleted or replaced since), a checkpoint without the model's SHA-256, a best
model that is gone or another file, or a rerun asking for another run (other epochs, seed, validation items,
pretrained weights or key metric) trains anew as before."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from gloo_ranks import run_on_two_ranks
from ignite.engine import Engine, Events

from unimiss_monai.handlers import BestModelSaver, CheckpointInfo, PublishBestModel, TrainingCheckpoint
from unimiss_monai.handlers import publish_best_model as publish_module
from unimiss_monai.utils.hashing import sha256_file

EPOCHS = 2


def _run(root, max_epochs: int = EPOCHS, seed: int = 0, rank: int = 0, choice: dict | None = None,
         target=None) -> int:
    """A fine-tune as the bundles wire it (validation, then the epoch checkpoint; at the end the checkpoint, then the
    publish), 3 iterations an epoch; returns the iterations it trained."""
    ran = []
    torch.manual_seed(seed)
    net = torch.nn.Linear(2, 1)

    def step(engine, batch):
        ran.append(engine.state.iteration)
        with torch.no_grad():
            net.weight.add_(0.1)

    trainer = Engine(step)
    trainer.state.rank = rank
    saver = BestModelSaver(root / "out" / "checkpoints", {"model": net, "info": CheckpointInfo(bundle="b")},
                           key_metric_name="acc")

    def validate(engine):
        evaluator = Engine(lambda e, b: None)
        evaluator.state.metrics = {"acc": float(engine.state.epoch)}  # every epoch better: the last one is the best
        saver.metrics_completed(evaluator)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)
    TrainingCheckpoint(root / "out" / "checkpoints", {"network": net, "best_model": saver}, save_every=1,
                       epoch_level=True, resume_finished=False, seed=seed,
                       best_model_choice=choice).attach(trainer)
    PublishBestModel(saver, target or root / "models" / "model.pt").attach(trainer)
    trainer.run(range(3), max_epochs=max_epochs)
    return len(ran)


def _paths(root):
    run = root / "out" / "checkpoints"
    return run / "checkpoint.pt", run / "best_model.pt", root / "models" / "model.pt"


def _killed_before_publish(root, monkeypatch) -> bytes:
    """A finished run whose publish failed (the disk full), over a model of an earlier run; returns that model."""
    model = _paths(root)[2]
    model.parent.mkdir(parents=True)
    model.write_bytes(b"the model of an earlier run")
    with monkeypatch.context() as patch:
        patch.setattr(publish_module.shutil, "copyfile", _full_disk)
        with pytest.raises(OSError, match="No space left"):
            _run(root)
    return model.read_bytes()


def _said(caplog, level) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith("unimiss_monai")]


def test_a_finished_run_killed_before_its_publish_publishes_without_training(tmp_path, monkeypatch, caplog):
    earlier = _killed_before_publish(tmp_path, monkeypatch)
    checkpoint, best, model = _paths(tmp_path)
    recorded = torch.load(checkpoint, weights_only=True)["best_model"]
    assert recorded["sha256"] == sha256_file(best) and [s for s, _ in recorded["_saved"]] == [float(EPOCHS)]
    assert model.read_bytes() == earlier
    written = checkpoint.read_bytes()
    with caplog.at_level(logging.INFO, logger="unimiss_monai"):
        assert _run(tmp_path) == 0
    assert model.read_bytes() == best.read_bytes() and model.with_name("model.pt.prev").read_bytes() == earlier
    assert checkpoint.read_bytes() == written  # nothing trained, so the checkpoint is not written again
    assert f"{checkpoint}: {best} is the best model of the finished run (key metric 2), never published to {model} " \
           "(the run stopped, or the copy failed, after its last checkpoint): publishing it instead of training anew" \
           in _said(caplog, logging.INFO)
    assert _said(caplog, logging.WARNING) == []
    # published now: the same command again retrains, as a finished run always has
    assert _run(tmp_path) == 3 * EPOCHS


def test_a_finished_and_published_run_trains_anew(tmp_path, caplog):
    assert _run(tmp_path) == 3 * EPOCHS
    with caplog.at_level(logging.INFO, logger="unimiss_monai"):
        assert _run(tmp_path) == 3 * EPOCHS
    assert any(m.endswith("is the checkpoint of a finished run: training anew") for m in _said(caplog, logging.INFO))
    assert _said(caplog, logging.WARNING) == []


@pytest.mark.parametrize("change", ["deleted", "replaced", "published over by another run"])
def test_a_published_run_trains_anew_after_its_published_model_is_deleted_or_replaced(tmp_path, caplog, change):
    assert _run(tmp_path) == 3 * EPOCHS
    checkpoint, best, model = _paths(tmp_path)
    assert json.loads(publish_module.published_record(best).read_text()) == {"sha256": sha256_file(best),
                                                                              "to": str(model)}
    if change == "deleted":
        model.unlink()
    elif change == "replaced":
        model.write_bytes(b"weights the user downloaded")
    else:  # a run of another output_dir publishing to the same models/ folder
        assert _run(tmp_path / "other", seed=3) == 3 * EPOCHS
        model.write_bytes(_paths(tmp_path / "other")[1].read_bytes())
    there = model.read_bytes() if model.exists() else None
    with caplog.at_level(logging.INFO, logger="unimiss_monai"):
        assert _run(tmp_path) == 3 * EPOCHS
    assert any(m.endswith("is the checkpoint of a finished run: training anew") for m in _said(caplog, logging.INFO))
    assert not any("never published" in m for m in caplog.messages) and _said(caplog, logging.WARNING) == []
    assert model.read_bytes() == best.read_bytes()  # the retrained run published, keeping what was there
    assert there is None or model.with_name("model.pt.prev").read_bytes() == there


def test_a_publish_that_cannot_be_recorded_is_said_and_the_run_succeeds(tmp_path, monkeypatch, caplog):
    def full_disk(obj, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publish_module, "save_json", full_disk)
    with caplog.at_level(logging.WARNING, logger="unimiss_monai"):
        assert _run(tmp_path) == 3 * EPOCHS
    _, best, model = _paths(tmp_path)
    assert model.read_bytes() == best.read_bytes()
    assert len(said := _said(caplog, logging.WARNING)) == 1
    assert said[0].startswith(f"published {model}, but could not record it in {publish_module.published_record(best)}")


@pytest.mark.parametrize("change", ["gone", "replaced"])
def test_an_unpublished_best_model_that_is_gone_or_another_trains_anew_with_a_warning(tmp_path, monkeypatch,
                                                                                      caplog, change):
    earlier = _killed_before_publish(tmp_path, monkeypatch)
    checkpoint, best, model = _paths(tmp_path)
    if change == "gone":
        best.unlink()
    else:
        torch.save({"model": {"weight": torch.zeros(1, 2)}}, best)
    with caplog.at_level(logging.WARNING, logger="unimiss_monai"):
        assert _run(tmp_path) == 3 * EPOCHS
    why = "is gone: training anew" if change == "gone" else "its SHA-256 differs from the one the checkpoint recorded"
    assert len(said := _said(caplog, logging.WARNING)) == 1 and said[0].startswith(f"{checkpoint}: {best}")
    assert why in said[0] and str(model) in said[0]
    assert model.with_name("model.pt.prev").read_bytes() == earlier  # the retrained run published, keeping it


def test_an_older_checkpoint_without_the_sha256_trains_anew(tmp_path, monkeypatch, caplog):
    _killed_before_publish(tmp_path, monkeypatch)
    checkpoint = _paths(tmp_path)[0]
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt["best_model"]["sha256"]
    torch.save(ckpt, checkpoint)
    with caplog.at_level(logging.WARNING, logger="unimiss_monai"):
        assert _run(tmp_path) == 3 * EPOCHS
    assert _said(caplog, logging.WARNING) == []


@pytest.mark.parametrize("other", [{"max_epochs": EPOCHS + 1}, {"seed": 7}])
def test_a_rerun_asking_for_another_run_trains_anew(tmp_path, monkeypatch, other):
    _killed_before_publish(tmp_path, monkeypatch)
    assert _run(tmp_path, **other) == 3 * other.get("max_epochs", EPOCHS)


def _choice(root, validation: str = "a", weights: bytes | None = b"pretrained", key_metric: str = "acc") -> dict:
    """What chooses the best model: validation items (files), the pretrained weights file (None: from scratch), the key
    metric's name."""
    root.mkdir(exist_ok=True)
    for name in "abc":
        (root / f"{name}.png").write_bytes(name.encode())
    pretrained = root / "pretrained.pt"
    if weights is not None and (not pretrained.exists() or pretrained.read_bytes() != weights):
        pretrained.write_bytes(weights)
    items = [{"image": str(root / f"{name}.png")} for name in validation]
    return {"validation": items, "pretrained": None if weights is None else str(pretrained), "key_metric": key_metric}


@pytest.mark.parametrize("other, why", [
    ({"validation": "ab"}, 'other validation items (1 new, 0 gone of 1; e.g. {"image": "'),
    ({"weights": b"a newer pretraining"}, "other pretrained weights ("),
    ({"weights": None}, "this run: none, trained from scratch)"),
    ({"key_metric": "auc"}, "another key metric (acc; this run: auc)"),
])
def test_a_rerun_choosing_its_best_model_otherwise_trains_anew_saying_why(tmp_path, monkeypatch, caplog, other, why):
    model = _paths(tmp_path)[2]
    model.parent.mkdir(parents=True)
    with monkeypatch.context() as patch:
        patch.setattr(publish_module.shutil, "copyfile", _full_disk)
        with pytest.raises(OSError, match="No space left"):
            _run(tmp_path, choice=_choice(tmp_path / "inputs"))
    with caplog.at_level(logging.INFO, logger="unimiss_monai"):
        assert _run(tmp_path, choice=_choice(tmp_path / "inputs", **other)) == 3 * EPOCHS
    checkpoint, best, _ = _paths(tmp_path)
    assert len(said := _said(caplog, logging.WARNING)) == 1, said
    assert said[0].startswith(f"{checkpoint}: {best} is the best model of the finished run (key metric 2), never "
                              f"published to {model} (the run stopped, or the copy failed, after its last checkpoint), "
                              "but this run is another, of ")
    assert why in said[0] and said[0].endswith(": training anew; to publish that model instead, run again as it was")
    assert not any("publishing it instead" in m for m in caplog.messages)


def test_the_same_choice_in_other_words_still_publishes(tmp_path, monkeypatch):
    # the same files named through a link, and the same items in another order: the same run
    model = _paths(tmp_path)[2]
    model.parent.mkdir(parents=True)
    with monkeypatch.context() as patch:
        patch.setattr(publish_module.shutil, "copyfile", _full_disk)
        with pytest.raises(OSError, match="No space left"):
            _run(tmp_path, choice=_choice(tmp_path / "inputs", validation="ab"))
    (tmp_path / "link").symlink_to(tmp_path / "inputs")
    again = _choice(tmp_path / "link", validation="ba")
    assert _run(tmp_path, choice=again) == 0 and model.read_bytes() == _paths(tmp_path)[1].read_bytes()


def _full_disk(src, dst):
    raise OSError(28, "No space left on device")


def _rank(rank, tmp):
    original, publish_module.shutil.copyfile = publish_module.shutil.copyfile, _full_disk
    try:
        _run(tmp, rank=rank)  # rank 0 publishes, and fails; the others publish nothing
    except OSError:
        assert rank == 0
    finally:
        publish_module.shutil.copyfile = original
    torch.distributed.barrier()  # as a rerun starts after the run ended: its last checkpoint written
    torch.save({"ran": _run(tmp, rank=rank)}, tmp / f"rank{rank}.pt")


def test_every_rank_publishes_instead_of_training(tmp_path):
    # all ranks follow rank 0's reading of the files: one training while another does not would hang the run
    run_on_two_ranks(_rank, tmp_path)
    assert [torch.load(tmp_path / f"rank{r}.pt", weights_only=True)["ran"] for r in (0, 1)] == [0, 0]
    _, best, model = _paths(tmp_path)
    assert model.read_bytes() == best.read_bytes()


def test_a_published_run_publishes_to_a_new_place_without_training(tmp_path):
    """The record of a publish names where the model went: run again with another place to publish to (a new
    --ckpt_dir), the finished run's best model is published there, not trained again."""
    assert _run(tmp_path) == 3 * EPOCHS
    best, elsewhere = _paths(tmp_path)[1], tmp_path / "models2" / "model.pt"
    assert _run(tmp_path, target=elsewhere) == 0
    assert elsewhere.read_bytes() == best.read_bytes()
    assert _run(tmp_path, target=elsewhere) == 3 * EPOCHS  # published there now: as any published run, trained anew
