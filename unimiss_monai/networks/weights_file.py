"""What a weights file is, wherever a command is handed one: the file a folder keeps its weights in, and the ``info``
a file records.

Fine-tuning (``--pretrained_path``), ``publish-pretrained`` and packaging read the same files: a pretraining run's
export, a downloaded bundle, a converted official checkpoint. They share these two answers so that a folder or a
converted file accepted by one is accepted by all.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from unimiss_monai.utils.once import first_time, is_said
from unimiss_monai.utils.trainer_state import finished, planned_epochs, position

__all__ = ["PRETRAINING_BUNDLE", "WEIGHTS_IN_FOLDER", "file_info", "fine_tune_checkpoint", "finished_run",
           "is_fine_tune_checkpoint", "is_official_checkpoint", "recorded_info", "refuse_folder_as_model",
           "refuse_trained_model", "unfinished_run", "weights_in_folder"]

logger = logging.getLogger(__name__)

#: the topic of :mod:`unimiss_monai.utils.once` under which the weights files already said to be an earlier run's
#: (:func:`_say_later_run_stopped`) are kept. Ranks pool it after a dealt-out data check: each rank resolves the same
#: file, so what one said the others need not say again; no data-loading worker resolves weights
EARLIER_RUN_WEIGHTS = "weights of an earlier run"

#: the bundle whose weights are a pretraining export; every other bundle's models/model.pt is a fine-tuned task network
PRETRAINING_BUNDLE = "unimiss_pretraining"
#: where a bundle folder, and the output folder of a finished pretraining run, keep their weights
WEIGHTS_IN_FOLDER = os.path.join("models", "model.pt")


def weights_in_folder(path: str | os.PathLike, what: str = "pretrained_path") -> str:
    """The weights file ``path`` names: ``<path>/models/model.pt`` for a folder (a downloaded or published bundle, or
    the ``--output_dir`` of a finished pretraining run), else ``path`` itself, whether or not it exists (the caller
    says what a missing file means to it).

    Args:
        path: a file or a folder.
        what: how the errors name ``path`` (``"pretrained_path"``, ``"publish-pretrained: source"``).

    A run folder's ``models/model.pt`` beside the checkpoint of a later run into the folder that has not finished
    is said in a warning to be the earlier run's.

    Raises:
        FileNotFoundError (one line naming the folder): a folder without ``models/model.pt``; a run that has not
            finished (it has ``checkpoints/checkpoint.pt``) is told to resume to its end.
    """
    path = os.fspath(path)
    weights = os.path.join(path, WEIGHTS_IN_FOLDER) if os.path.isdir(path) else path
    if os.path.isfile(weights):
        _say_later_run_stopped(weights)
        return weights
    if not os.path.isdir(path):
        return path
    checkpoint = os.path.join(path, "checkpoints", "checkpoint.pt")
    if os.path.isfile(checkpoint) and fine_tune_checkpoint(checkpoint) is not None:
        raise FileNotFoundError(
            f"{what} {path!r} is the output folder of a fine-tuning run (its checkpoint holds a task network), not of "
            "a pretraining run; pass the output folder of a finished pretraining run or its models/model.pt"
        )
    if os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"{what} {path!r} is the folder of a pretraining run that has not finished (checkpoints/checkpoint.pt, no "
            "models/model.pt): run it again with the same --output_dir to resume it to its end, which exports "
            "models/model.pt"
        )
    raise FileNotFoundError(
        f"{what} {path!r} is a folder without models/model.pt; pass the output folder of a finished pretraining run, "
        "a pretraining bundle folder (python -m unimiss_monai download unimiss_pretraining) or the model.pt file itself"
    )


def refuse_folder_as_model(path: str | os.PathLike, option: str = "--ckpt_path",
                           folder_option: str | None = "--ckpt_dir") -> None:
    """Refuse a folder given as the trained model file (``--ckpt_path models/smoke``), in one line naming the model
    file to pass: the ``model.pt`` it holds (a ``--ckpt_dir``), else its ``models/model.pt`` (a bundle or run folder).
    Said as a missing model, it sent the user to train again a model that was there. Anything else passes.
    ``option`` is the option the user gave the path with, ``folder_option`` the one that takes the model's folder
    instead (``None`` where the command has none, e.g. ``bench-infer --weights``): the line names only what they typed.

    Raises:
        FileNotFoundError: ``path`` is a folder.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        return
    held = next((os.path.join(path, name) for name in ("model.pt", WEIGHTS_IN_FOLDER)
                 if os.path.isfile(os.path.join(path, name))), None)
    if held is not None:
        instead = f" (or {folder_option} {os.path.dirname(held)})" if folder_option else ""
        raise FileNotFoundError(f"{option} {path} is a folder, not a model file; pass the model it holds: "
                                f"{option} {held}{instead}")
    instead = f", or its folder as {folder_option}" if folder_option else ""
    raise FileNotFoundError(f"{option} {path} is a folder, not a model file, and holds no model.pt; pass the "
                            f"model.pt of a trained run as {option}{instead}")


def _peek(path: str | os.PathLike) -> Any:
    """The content of the torch file ``path``, its tensors left on disk (``mmap``; a file in the legacy, not zip,
    format is read whole); ``None`` when there is no such file, or it is not one weights-only loading reads (its
    reader says why)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, pickle.UnpicklingError):  # none there, or refused as no weights: a second read refuses it too
        return None
    except Exception:  # noqa: BLE001 - a legacy file, which mmap cannot map: read whole below
        pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch file, or unreadable: not this question's to answer
        return None


def fine_tune_checkpoint(path: str | os.PathLike) -> Mapping | None:
    """The content of ``path`` when it is a fine-tuning run's resume checkpoint (it keeps the best model's record
    beside the network, the optimizer and the trainer's position), read without loading its tensors; ``None`` for
    any other file, or one that cannot be read."""
    saved = _peek(path)
    return saved if is_fine_tune_checkpoint(saved) else None


def is_fine_tune_checkpoint(obj: Any) -> bool:
    """Whether a loaded file is a fine-tuning run's resume checkpoint: the record of its best model beside the
    network, the optimizer and the trainer's position (``TrainingCheckpoint`` in the fine-tuning bundles)."""
    return isinstance(obj, Mapping) and "best_model" in obj


def unfinished_run(checkpoint: str | os.PathLike) -> str | None:
    """``"3 of 10 epochs"`` when ``checkpoint`` is the resume checkpoint of a run that has not finished (its trainer
    short of the epochs it was set to); ``None`` otherwise, when it says neither, or when there is none."""
    trainer = _saved_trainer(checkpoint)
    held, planned = position(trainer), planned_epochs(trainer)
    if held is None or planned is None or finished(trainer):
        return None
    return f"{held[0]} of {planned} epochs"


def finished_run(checkpoint: str | os.PathLike) -> bool:
    """Whether ``checkpoint`` is the resume checkpoint of a run that finished: its trainer at the epochs it was set to
    (``False`` when it says otherwise or nothing, or there is none)."""
    trainer = _saved_trainer(checkpoint)
    return finished(trainer) and position(trainer) is not None  # finished: the epochs it was set to are recorded


def _saved_trainer(checkpoint: str | os.PathLike) -> Mapping | None:
    """The trainer state a resume checkpoint holds, read without loading its tensors; None when there is none."""
    saved = _peek(checkpoint)
    return saved.get("trainer") if isinstance(saved, Mapping) else None


def _say_later_run_stopped(weights: str) -> None:
    """Warn when ``weights`` is the ``models/model.pt`` of a run folder whose ``checkpoints/checkpoint.pt`` is of a
    later run that has not finished (one continued with more epochs and stopped): the model is the earlier run's."""
    models = Path(weights).parent
    if Path(weights).name != os.path.basename(WEIGHTS_IN_FOLDER) or models.name != os.path.dirname(WEIGHTS_IN_FOLDER):
        return
    # once a process (and over ranks, which pool it): a study's runs and publish-pretrained's two reads each resolve it
    if is_said(EARLIER_RUN_WEIGHTS, weights):
        return
    if unfinished := unfinished_run(models.parent / "checkpoints" / "checkpoint.pt"):
        first_time(EARLIER_RUN_WEIGHTS, weights)
        logger.warning("%s is the model of an earlier finished run; a later run into %s has not finished (%s in "
                       "checkpoints/checkpoint.pt) and is not used: rerun it with the same --output_dir to finish it, "
                       "which exports its model", weights, models.parent, unfinished)


def is_official_checkpoint(obj: Any) -> bool:
    """Whether a loaded file is a training checkpoint of the official UniMiSS code: its networks under ``student`` and
    ``teacher``, in that code's key names, which ``convert-checkpoint`` maps to this package's."""
    return isinstance(obj, Mapping) and ("student" in obj or "teacher" in obj)


def recorded_info(obj: Any) -> dict[str, Any]:
    """The ``info`` a loaded weights file records, as a new dict (``{}`` when it has none). ``convert-checkpoint``
    stores its ``variant`` at the top level, beside ``model``, with no ``info``: that variant is the file's
    ``info["variant"]``."""
    if not isinstance(obj, Mapping):
        return {}
    info = dict(obj["info"]) if isinstance(obj.get("info"), Mapping) else {}
    if "variant" not in info and isinstance(obj.get("variant"), str):
        info["variant"] = obj["variant"]
    return info


def file_info(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`recorded_info` of the weights file ``path``, read without loading its tensors (``{}`` when it cannot be
    read: the load that follows says why)."""
    return recorded_info(_peek(path))


def refuse_trained_model(info: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Refuse, in one line naming ``path``, weights whose ``info`` (:func:`recorded_info`) is a fine-tuned model's:
    it records the ``classes`` of its bundle's head (``CheckpointInfo``), which no backbone has. Such a model holds
    the same encoder tensors as a pretraining export, so it would otherwise pass as pretraining weights. What they are
    decides, not the name in ``info.bundle``: a release is named by its publisher (``package-bundle --name``,
    ``release-official --name``), so a pretraining export may carry any name. Pretraining exports, released
    pretraining bundles, converted official checkpoints and files without ``info`` pass."""
    if "classes" not in info:
        return
    bundle = info.get("bundle") or "a fine-tuning bundle"
    raise ValueError(
        f"{os.fspath(path)} is a trained model of {bundle}, not a pretraining export (its info records the classes "
        f"of a fine-tuned network); pass a pretraining export: the models/model.pt of a pretraining run or of the "
        f"{PRETRAINING_BUNDLE} bundle, or the file publish-pretrained wrote"
    )
