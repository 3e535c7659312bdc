"""Weights of a run that has not finished are never taken for a finished run's: a fine-tuning run's resume checkpoint
is refused as the trained model, its best model so far is run with a warning, and a pretraining folder whose later
run was stopped says that its model is the earlier run's."""

from __future__ import annotations

import logging

import pytest
import torch
from tiny_nets import EncoderHead as _Net

from unimiss_monai.handlers import load_pretrained_init
from unimiss_monai.handlers.pretrained_init import resolve_pretrained_path


def _trainer(done_epochs: int, planned: int) -> dict:
    """An ignite trainer state as ``TrainingCheckpoint`` saves it (2 iterations an epoch)."""
    return {"iteration": 2 * done_epochs, "epoch_length": 2, "max_epochs": planned}


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("done", [3, 10])
def test_a_fine_tune_resume_checkpoint_is_refused_and_its_best_model_warned_of_until_the_run_ends(
        tmp_path, caplog, done):
    net, run = _Net(), tmp_path / "out" / "checkpoints"
    run.mkdir(parents=True)
    checkpoint, best = run / "checkpoint.pt", run / "best_model.pt"
    torch.save({"network": net.state_dict(), "optimizer": {}, "best_model": {"_saved": []},
                "trainer": _trainer(done, 10)}, checkpoint)
    torch.save({"model": net.state_dict()}, best)
    with pytest.raises(ValueError) as err:
        load_pretrained_init(_Net(), checkpoint, trained=True)
    message = str(err.value)
    assert message.startswith(f"{checkpoint} is a fine-tuning run's resume checkpoint") and "\n" not in message
    assert "point --ckpt_path at the model.pt a finished run publishes" in message
    with caplog.at_level(logging.WARNING, logger="unimiss_monai"):
        load_pretrained_init(_Net(), best, trained=True)
    said = [m for m in _warnings(caplog) if "has not finished" in m]
    if done < 10:
        assert said == [f"{best} is the best model so far of a training run that has not finished (3 of 10 epochs in "
                        "the checkpoint.pt beside it): rerun the training with the same --output_dir to finish it, "
                        "which publishes its model"]
    else:  # the best model of a finished run: the very file it published
        assert said == []


def test_a_pretraining_folder_whose_later_run_was_stopped_says_its_model_is_the_earlier_runs(tmp_path, caplog,
                                                                                              monkeypatch):
    from unimiss_monai.networks.weights_file import EARLIER_RUN_WEIGHTS
    from unimiss_monai.utils import once

    folder = tmp_path / "pretraining run"
    (folder / "models").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    torch.save({"model": _Net().state_dict()}, folder / "models" / "model.pt")
    torch.save({"network": {}, "loss": {}, "trainer": _trainer(4, 4)}, folder / "checkpoints" / "checkpoint.pt")
    with caplog.at_level(logging.WARNING, logger="unimiss_monai"):
        assert resolve_pretrained_path(folder) == str(folder / "models" / "model.pt")
    assert _warnings(caplog) == []  # the checkpoint of the run that exported it
    torch.save({"network": {}, "loss": {}, "trainer": _trainer(3, 6)}, folder / "checkpoints" / "checkpoint.pt")
    model = folder / "models" / "model.pt"
    for given in (folder, model):  # the folder, or its model named (as publish-pretrained's default is)
        monkeypatch.setattr(once, "_SAID", {})  # a process of its own
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="unimiss_monai"):
            assert resolve_pretrained_path(given) == str(model)
        assert _warnings(caplog) == [
            f"{model} is the model of an earlier finished run; a later run into {folder} has not finished (3 of 6 "
            "epochs in checkpoints/checkpoint.pt) and is not used: rerun it with the same --output_dir to finish it, "
            "which exports its model"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimiss_monai"):  # said once a process, however often it is read
        resolve_pretrained_path(folder)
    assert _warnings(caplog) == []
    this_rank = once.said(EARLIER_RUN_WEIGHTS)  # what the ranks pool after a dealt-out check: said once a run
    assert this_rank == {EARLIER_RUN_WEIGHTS: [str(model)]}
    monkeypatch.setattr(once, "_SAID", {})  # another rank, which took it
    once.take_said(this_rank)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimiss_monai"):
        resolve_pretrained_path(folder)
    assert _warnings(caplog) == []
    monkeypatch.setattr(once, "_SAID", {})
    # a trainer state that says no epoch count: nothing to tell
    torch.save({"network": {}, "trainer": {"iteration": 6}}, folder / "checkpoints" / "checkpoint.pt")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimiss_monai"):
        resolve_pretrained_path(folder)
    assert _warnings(caplog) == []


def test_a_resume_checkpoint_is_not_packaged_as_a_release(tmp_path):
    from unimiss_monai.release.package import weights_payload

    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"network": _Net().state_dict(), "optimizer": {}, "best_model": {"_saved": []},
                "trainer": _trainer(3, 10)}, checkpoint)
    with pytest.raises(ValueError, match=r"are a fine-tuning run's resume checkpoint, not a model to release; "
                                         r"package the models/model.pt"):
        weights_payload(checkpoint)


def test_a_legacy_format_resume_checkpoint_is_told_too(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"network": _Net().state_dict(), "best_model": {"_saved": []}, "trainer": _trainer(3, 10)},
               checkpoint, _use_new_zipfile_serialization=False)  # the format before torch 1.6, which mmap cannot read
    with pytest.raises(ValueError, match="is a fine-tuning run's resume checkpoint"):
        load_pretrained_init(_Net(), checkpoint, trained=True)
