"""Initialise a fine-tuning network from a pretraining checkpoint, with a printed report of what was loaded.

The pretraining bundle saves ``{"model": backbone_state_dict, "info": {...}}``; fine-tuning networks hold that
backbone as ``network.encoder``. :func:`load_pretrained_init` finds the best alignment of the checkpoint's keys with
either the whole network or its encoder, refuses checkpoints whose tensors do not fit (another variant) or that would
leave encoder tensors untrained (unless ``allow_partial``), and says what it did. It runs in the bundles' ``initialize``,
so a bad checkpoint stops a run before any training.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from unimiss_monai.handlers.checkpoint_info import as_options, settings_mismatch
from unimiss_monai.networks.pretrained import PRETRAINED as _PRETRAINED, TRAINED as _TRAINED, load_pretrained
from unimiss_monai.networks.state_dict_diff import state_dict_differences
from unimiss_monai.networks.weights_file import (
    file_info, fine_tune_checkpoint, recorded_info, refuse_folder_as_model, refuse_trained_model, unfinished_run,
    weights_in_folder,
)
from unimiss_monai.utils.args import as_bool, optional_path
from unimiss_monai.utils.ema import unwrap_model
from unimiss_monai.utils.finite import NonFiniteWeightsError, refuse_non_finite_weights
from unimiss_monai.utils.serialization import UnreadableCheckpointError, UnsafeCheckpointError, load_torch_file

__all__ = ["class_name_list", "classes_mismatch", "default_pretrained_path", "load_pretrained_init",
           "resolve_pretrained_path"]

logger = logging.getLogger(__name__)

# wrappers that prefix parameter names: DDP/DataParallel, torch.compile, DINO-style student/teacher holders
_STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.")
_STATE_KEYS = ("model", "state_dict", "network", "teacher", "student", "encoder")


def default_pretrained_path(bundle_root: str | os.PathLike, relative: str = "../unimiss_pretraining/models/model.pt") -> str | None:
    """``bundle_root/relative`` when that file exists (the pretraining bundle's output), else ``None``."""
    path = Path(bundle_root) / relative
    return str(path.resolve()) if path.is_file() else None


def resolve_pretrained_path(path: str | os.PathLike) -> str:
    """The weights file ``path`` names: the file itself, or ``<path>/models/model.pt`` for a bundle folder (a
    downloaded or published pretraining bundle) or the output folder of a finished pretraining run
    (:func:`unimiss_monai.networks.weights_file.weights_in_folder`, which ``publish-pretrained`` shares).

    Raises:
        FileNotFoundError (one line): no such file, or a folder without ``models/model.pt``.
    """
    path = weights_in_folder(path, "pretrained_path")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained_path {path!r} does not exist; run the pretraining bundle first or set pretrained_path to null")
    return path


def _extract_state(obj: Any, path: str, checkpoint_key: str | None, what: str) -> dict[str, torch.Tensor]:
    if checkpoint_key is not None:
        if not isinstance(obj, Mapping) or checkpoint_key not in obj:
            keys = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
            raise KeyError(f"{what} {path} has no key {checkpoint_key!r} (it has {keys}); set checkpoint_key to one of them")
        obj = obj[checkpoint_key]
    elif isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = next((k for k in _STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
        if found is None:
            raise KeyError(f"{what} {path} holds no state dict under any of {list(_STATE_KEYS)} (it has {sorted(obj)}); set checkpoint_key")
        obj = obj[found]
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"{what} {path} holds a {type(obj).__name__}, not a state dict")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in _STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    refuse_non_finite_weights(state, f"{what} {path}")
    return state


def _load_unimiss(net: torch.nn.Module, path: str, strict: bool, allow_partial: bool, what: str) -> dict[str, Any]:
    # the networks' own loader also resizes position embeddings trained at another input size and adapts input convs;
    # its errors already name the file
    rep = load_pretrained(net, path, strict=strict, allow_partial=allow_partial, what=what)
    if rep.mismatched and not allow_partial:
        raise ValueError(
            f"{what} {path} does not fit {type(net).__name__}: {len(rep.mismatched)} tensors differ in shape "
            f"(e.g. {rep.mismatched[0]}); it was trained with another variant or size, so choose the matching "
            "variant/overrides or another checkpoint"
        )
    if not rep.matched:
        raise ValueError(f"{what} {path} shares no parameter names with {type(net).__name__}; is it a checkpoint of this network family?")
    return {
        "path": path, "target": "network", "loaded": len(rep.matched), "missing": rep.missing,
        "unexpected": rep.unexpected, "variant": rep.checkpoint_variant, "encoder_loaded": rep.encoder_loaded,
        "encoder_resized": rep.encoder_resized, "inflated": rep.inflated, "set_aside": rep.set_aside, "info": rep.info,
    }


def _load_trained(network: torch.nn.Module, path, checkpoint_key: str | None, encoder_attr: str,
                  settings: Mapping[str, Any] | None = None, bundle: str | None = None,
                  classes: Sequence[str] | None = None, classes_option: str = "class_names") -> dict[str, Any]:
    """Every tensor of ``network`` from the bundle's trained model ``path``, refused in one line with what to do;
    also refused when the model records other ``settings`` or ``classes`` than this run's."""
    path = None if path is None else os.path.expanduser(str(path))  # a quoted ~ reaches the run as it was typed
    if path is not None:
        refuse_folder_as_model(path)
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(
            f"no trained model at {path}: train this bundle first (configs/train.json), or point --ckpt_dir at the "
            "folder of a trained model.pt (after a smoke training, add configs/smoke.yaml to this command too)"
        )
    path = str(path)
    _check_finished_run(path)
    try:
        report = _load_file(network, path, checkpoint_key, encoder_attr, True, False, _TRAINED)
    except (UnreadableCheckpointError, UnsafeCheckpointError, NonFiniteWeightsError):
        raise  # the file itself is at fault: its one line says so, and no overlay would help
    except ValueError as err:
        # a model of another bundle, or a pretraining export: no overlay makes it fit (its info says what it is)
        saved = _saved(path)
        info = saved.get("info") if isinstance(saved.get("info"), dict) else {}
        other = info.get("bundle") if isinstance(info.get("bundle"), str) else None
        # a backbone records its family, whatever name its release gives it (convert-checkpoint: a bare variant)
        export = "family" in info or (other is None and isinstance(saved.get("variant"), str))
        if bundle and other and other != bundle and not export:
            # said alone: why the load failed in detail (a grid it cannot tell, a shape) would only mislead
            raise ValueError(f"the trained model {path} is a model of {other} (its info says so), not of {bundle}: "
                             "point --ckpt_path (or --ckpt_dir) at a model this bundle trained") from None
        if classes is not None and (problem := _classes_problem(path, info.get("classes"), classes, classes_option)):
            raise ValueError(problem) from None  # a head of another size is a matter of classes, not of overlays
        first = str(err).splitlines()[0]
        if first.startswith(f"{_TRAINED} "):  # the loader's own refusal already names the trained model and the file
            what_failed = f"the {first}"
        else:  # the file is named once, in front
            reason = first.replace(f"{_TRAINED} {path}: ", "").replace(f"{path}: ", "")
            what_failed = f"the trained model {path} does not fit this network: {reason}"
        if export:
            raise ValueError(f"{what_failed}; it is a pretraining export (a backbone without this bundle's head), not "
                             "a model this bundle trained: fine-tune from it first (configs/train.json with "
                             f"--pretrained_path {shlex.quote(path)}), then point --ckpt_path at the model that "
                             "writes") from None
        raise ValueError(
            f"{what_failed} -- run this command with the overlays and options it was trained with (configs/smoke.yaml "
            "after a smoke training, the same --variant)"
        ) from None
    # the info the load read (a UniMiSS network's report holds it), else the file's, read without its tensors
    info = report["info"] if "info" in report else file_info(path)
    if classes is not None and (problem := _classes_problem(path, info.get("classes"), classes, classes_option)):
        raise ValueError(problem)  # the weights fit: only the names the model records tell another order
    if classes is not None and class_name_list(info.get("classes")) is None:
        # a bare state dict (or a model of a version before they were recorded): the order cannot be checked, and
        # names in another order label every output wrongly with no error
        logger.warning("the trained model %s records no class names, so their order cannot be checked: its outputs "
                       "are named %s, in this order, as --%s gives them; make sure the model was trained with these",
                       path, class_name_list(classes), classes_option)
    recorded = (report.get("info") or {}).get("settings")
    if diffs := settings_mismatch(recorded, settings):
        # the weights fit, yet inputs prepared at another spacing or size would give answers that look right and are not
        keys = [k for k in recorded if k in settings and settings_mismatch({k: recorded[k]}, settings)]
        raise ValueError(
            f"the trained model {path} was trained with other input settings: {diffs}; run this command with "
            f"{as_options(recorded, keys)} (or the overlay it was trained with)"
        )
    return report


def classes_mismatch(recorded, classes) -> str | None:
    """How the classes a trained model records (its ``info["classes"]``) differ from ``classes``, the names a run
    gives the network's outputs: ``"the same classes in another order"`` or ``"other classes"``, or ``None`` when they
    are the same in the same order (or either side names none: a model saved before they were recorded). The outputs
    keep the order the model was trained in and the run's names label them (probability columns, mask channels,
    legends, per-class scores): the same classes in another order gave every output another class's name, and scores
    against the wrong labels, with no error. One name given as a string is one class."""
    theirs, ours = class_name_list(recorded), class_name_list(classes)
    if theirs is None or ours is None or theirs == ours:
        return None
    return "the same classes in another order" if sorted(theirs) == sorted(ours) else "other classes"


def _classes_problem(path: str, recorded, classes: Sequence[str] | str, option: str) -> str | None:
    """:func:`classes_mismatch` of the classes the trained model ``path`` records as the one line that refuses it,
    naming ``option``."""
    if (how := classes_mismatch(recorded, classes)) is None:
        return None
    theirs, ours = class_name_list(recorded), class_name_list(classes)
    return (f"the trained model {path} was trained with --{option} {theirs}, this run names {ours}: {how}"
            f"{', so its outputs would go by the wrong names' if how.endswith('order') else ''}; run this command "
            f"with --{option} {shlex.quote(json.dumps(theirs))}")


def class_name_list(classes) -> list[str] | None:
    """Class names as a list of strings (one name given as a string is one class); ``None`` for anything else."""
    if isinstance(classes, str):
        return [classes]
    return [str(c) for c in classes] if isinstance(classes, (list, tuple)) else None


def _check_finished_run(path: str) -> None:
    """Refuse a fine-tuning run's resume checkpoint as the trained model, in one line: its network is the last saved
    epoch's, not the model the run chose on its validation set, and the predictions of a run stopped part-way would
    pass as a finished model's. Warn of a best model whose run (its ``checkpoint.pt`` beside it) has not finished."""
    if fine_tune_checkpoint(path) is not None:
        raise ValueError(f"{path} is a fine-tuning run's resume checkpoint (its network as the last saved epoch left "
                         "it, beside the optimizer), not the model the run chose: point --ckpt_path at the model.pt a "
                         "finished run publishes (the default; rerun the training with the same --output_dir to "
                         "finish it), or at the run's best_model.pt")
    if unfinished := unfinished_run(Path(path).with_name("checkpoint.pt")):
        logger.warning("%s is the best model so far of a training run that has not finished (%s in the "
                       "checkpoint.pt beside it): rerun the training with the same --output_dir to finish it, which "
                       "publishes its model", path, unfinished)


def _saved(path: str) -> dict:
    """The content of a trained model file, for what its ``info`` says it is (``{}`` when it cannot be read)."""
    try:
        saved = load_torch_file(path, "trained model")
    except (UnreadableCheckpointError, UnsafeCheckpointError, OSError):
        return {}
    return saved if isinstance(saved, dict) else {}


def load_pretrained_init(
    network: torch.nn.Module,
    path: str | os.PathLike | None,
    checkpoint_key: str | None = None,
    encoder_attr: str = "encoder",
    strict: bool = False,
    allow_partial: bool | str = False,
    trained: bool | str = False,
    settings: Mapping[str, Any] | None = None,
    bundle: str | None = None,
    classes: Sequence[str] | None = None,
    classes_option: str = "class_names",
) -> dict[str, Any]:
    """Load the tensors of checkpoint ``path`` that fit ``network`` (or ``network.<encoder_attr>``) and report.

    UniMiSS networks go through :func:`unimiss_monai.networks.load_pretrained` (position embeddings of another input
    size are resized); any other network is matched by parameter name here.

    Args:
        network: the fine-tuning network, possibly wrapped in ``DistributedDataParallel``.
        path: checkpoint file, or a pretraining bundle folder holding ``models/model.pt`` (what
            ``python -m unimiss_monai download unimiss_pretraining`` unpacks); ``None`` or ``""`` trains from scratch
            (reported, not an error).
        checkpoint_key: key of the state dict inside the checkpoint. Defaults to the first of ``model``,
            ``state_dict``, ``network``, ``teacher``, ``student``, ``encoder`` that exists, or the file itself.
        encoder_attr: name of the encoder sub-module that a backbone-only checkpoint is loaded into.
        strict: also fail when a tensor of the target module is missing from the checkpoint (UniMiSS networks: or
            a checkpoint tensor is left unused), as evaluation and inference need every tensor of the trained network;
            ``true``/``false`` strings accepted.
        allow_partial: load even when encoder tensors would stay at their random initialisation (missing from the
            checkpoint, or of another shape after position-embedding resizing); ``true``/``false`` strings accepted.
            Decoder and head tensors are task-specific and may always be missing.
        trained: ``path`` is the bundle's own trained model (evaluation, inference), not pretraining weights: a missing
            or unfitting file is refused with the fix for that case (train first, or add the overlay the model was
            trained with), and the log line and errors speak of the trained model; ``true``/``false`` strings accepted.
        settings: with ``trained``, this run's input settings (the bundle's ``model_settings``: spacing, window,
            image size); a model that recorded other ones (``info["settings"]``) is refused in one line naming them.
        bundle: with ``trained``, the name of the bundle that runs; a model that does not fit and whose ``info`` names
            another bundle is refused naming it.
        classes: with ``trained``, the names this run gives the network's outputs, in output order; a model that
            recorded others, or the same in another order (``info["classes"]``), is refused in one line.
        classes_option: the bundle's option that sets ``classes`` (``class_names``; ``structures`` for CXR
            segmentation), named in that refusal.

    Returns:
        ``{"path", "target", "loaded", "missing", "unexpected"}`` (``target``: ``"network"`` or ``"network.<attr>"``;
        ``missing``/``unexpected``: key lists); UniMiSS networks add ``variant``, ``encoder_loaded``,
        ``encoder_resized``, ``inflated``, ``set_aside`` and the file's ``info``.

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a folder without ``models/model.pt``.
        ValueError: no key matches, matching keys differ in shape (a checkpoint of another variant), the checkpoint's
            ``info`` names another variant or widths, or encoder tensors would stay untrained (see ``allow_partial``).
        NonFiniteWeightsError (a ValueError, one line naming the file and the tensor): a tensor holds NaN or Inf.
    """
    if as_bool(trained, "trained"):
        return _load_trained(network, path, checkpoint_key, encoder_attr, settings, bundle, classes, classes_option)
    path = optional_path(path)  # "--pretrained_path null" on the command line arrives as the word
    if path is None:
        # null comes from the configuration, not the user: an overlay (smoke.yaml, demo.yaml) sets it, or the default
        # found no published weights; the line says so, since the docs promise published weights when they exist
        logger.info(
            "pretrained_path is null in this configuration (an overlay such as smoke.yaml sets it so, or the default "
            "found no ../unimiss_pretraining/models/model.pt beside bundle_root): training from scratch; pass "
            "--pretrained_path to start from weights"
        )
        return {"path": None, "target": None, "loaded": 0, "missing": [], "unexpected": []}
    allow_partial, strict = as_bool(allow_partial, "allow_partial"), as_bool(strict, "strict")
    return _load_file(network, resolve_pretrained_path(path), checkpoint_key, encoder_attr, strict, allow_partial, _PRETRAINED)


def _load_file(
    network: torch.nn.Module, path: str, checkpoint_key: str | None, encoder_attr: str, strict: bool, allow_partial: bool,
    what: str,
) -> dict[str, Any]:
    """:func:`load_pretrained_init` of the file ``path``; ``what`` names it in the log line and errors (pretraining
    weights or the bundle's trained model)."""
    net = unwrap_model(network)
    if checkpoint_key is None and type(net).__module__.startswith("unimiss_monai.networks"):
        return _load_unimiss(net, path, strict, allow_partial, what)
    saved = load_torch_file(path, what)
    if what == _PRETRAINED and not strict:  # load_pretrained's check of a UniMiSS network, for any other one
        refuse_trained_model(recorded_info(saved), path)
    state = _extract_state(saved, path, checkpoint_key, what)

    targets: dict[str, torch.nn.Module] = {"network": net}
    encoder = getattr(net, encoder_attr, None)
    # a trained model is the whole network: an encoder-only file must not pass as one, leaving the head random
    if isinstance(encoder, torch.nn.Module) and what != _TRAINED:
        targets[f"network.{encoder_attr}"] = encoder
    # a checkpoint of the whole fine-tuning network aligns with "network"; a backbone-only one with the encoder
    best_name, best_module, best_common = max(
        ((name, module, set(state) & set(module.state_dict())) for name, module in targets.items()),
        key=lambda item: len(item[2]),
    )
    if not best_common:
        raise ValueError(
            f"{what} {path} shares no parameter names with {type(net).__name__} "
            f"(checkpoint keys look like {sorted(state)[:3]}); is it a checkpoint of this network family?"
        )
    target_state = best_module.state_dict()
    missing, unexpected, mismatched = state_dict_differences(target_state, state)
    if mismatched:
        k = mismatched[0]
        raise ValueError(
            f"{what} {path} does not fit {type(net).__name__}: {len(mismatched)} tensors differ in shape "
            f"(e.g. {k}: checkpoint {tuple(state[k].shape)} vs model {tuple(target_state[k].shape)}); it was trained with "
            "another variant or size, so choose the matching variant/overrides or another checkpoint"
        )
    if strict and missing:
        # evaluation and inference load a trained model strictly by design: relaxing it is no fix there
        fix = "; use strict=False to keep them random" if what == _PRETRAINED else ""
        raise ValueError(f"{what} {path} lacks {len(missing)} tensors of {best_name} (e.g. {missing[:3]}){fix}")
    # a backbone-only checkpoint targets the encoder itself, so all its missing tensors are encoder tensors
    untrained = missing if best_name != "network" else [k for k in missing if k.startswith(f"{encoder_attr}.")]
    if untrained and not allow_partial:
        raise ValueError(
            f"{what} {path} would leave {len(untrained)} encoder tensors of {type(net).__name__} untrained: "
            f"{', '.join(untrained[:3])}{f' and {len(untrained) - 3} more' if len(untrained) > 3 else ''}; "
            "load weights of this network, or pass allow_partial=True to train them from scratch"
        )
    best_module.load_state_dict({k: state[k] for k in best_common}, strict=False)
    report = {"path": path, "target": best_name, "loaded": len(best_common), "missing": missing, "unexpected": unexpected}
    lead = "" if what == _PRETRAINED else f"{what} "  # the pretraining line names the file alone
    logger.info(
        f"{lead}{path} -> {best_name}: loaded {len(best_common)}/{len(target_state)} tensors, "
        f"{len(missing)} kept random{' (e.g. ' + ', '.join(missing[:3]) + ')' if missing else ''}, "
        f"{len(unexpected)} unused{' (e.g. ' + ', '.join(unexpected[:3]) + ')' if unexpected else ''}"
    )
    return report
