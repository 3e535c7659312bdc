"""Publish pretraining weights to where the fine-tuning bundles load them from, as a deliberate and reversible step.

The fine-tuning bundles load ``bundles/unimiss_pretraining/models/model.pt`` by default
(:func:`unimiss_monai.handlers.default_pretrained_path`). A pretraining run exports under its own output folder;
``python -m unimiss_monai publish-pretrained SRC`` checks that export and puts it in place, keeping the previous
file beside it and recording where the weights came from.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from unimiss_monai.data.writers import keep_previous, save_torch
from unimiss_monai.networks.pretrained import INFO_WIDTHS, detect_variant, smoke_sized
from unimiss_monai.networks.weights_file import (
    is_official_checkpoint, recorded_info, refuse_trained_model, weights_in_folder,
)
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.serialization import load_torch_file
from unimiss_monai.utils.hashing import sha256_file
from unimiss_monai.utils.repository import REPOSITORY_BUNDLES, repository_bundle

__all__ = ["DEFAULT_DST", "check_export_target", "export_next_step", "publish_pretrained", "read_export"]

#: where the fine-tuning bundles look for pretrained weights (``default_pretrained_path`` of a sibling bundle)
DEFAULT_DST = REPOSITORY_BUNDLES / "unimiss_pretraining" / "models" / "model.pt"


def _default_dst() -> Path:
    """:data:`DEFAULT_DST` when this package runs from a checkout that holds the pretraining bundle; an installed
    package has no bundles beside it, and the weights would land in site-packages where no bundle reads them."""
    option = "--dst <bundles folder>/unimiss_pretraining/models/model.pt"
    return repository_bundle("unimiss_pretraining", "publish-pretrained", option) / "models" / "model.pt"


def read_export(path: str | os.PathLike) -> dict[str, Any]:
    """A pretraining export ``{"model": state_dict, "info": {...}}`` read with ``weights_only=True`` and checked.

    ``path`` may also be the output folder of a finished pretraining run or a pretraining bundle folder (its
    ``models/model.pt``, as ``--pretrained_path`` takes it), and the file may be what ``convert-checkpoint`` writes
    (``{"model", "head", "variant"}``): its ``variant`` becomes ``info["variant"]``.

    Raises:
        FileNotFoundError (one line naming the folder): a folder without ``models/model.pt``.
        ValueError (one line naming the file): missing or unreadable file, no ``model`` state dict, no ``variant`` in
            ``info`` or beside ``model`` (an export of ``StudentTeacher.export``, or a converted official checkpoint),
            a fine-tuned model (its ``info`` records its head's classes), or non-finite tensors.
    """
    path = Path(weights_in_folder(path, "publish-pretrained: source"))
    if not path.is_file():
        raise ValueError(f"publish-pretrained: source {path} does not exist; pass the model.pt a pretraining run "
                         "exported, or that run's output folder")
    obj = load_torch_file(path, "publish-pretrained: source")
    if is_official_checkpoint(obj) and "model" not in obj:
        raise ValueError(f"publish-pretrained: {path} is an official UniMiSS/UniMiSS+ training checkpoint (student and "
                         f"teacher networks); convert it first: python -m unimiss_monai convert-checkpoint "
                         f"{shlex.quote(str(path))} DST, then publish DST")
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model"), Mapping):
        keys = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path} holds no 'model' state dict (it has {keys}); pass a pretraining export")
    tensors = {k: v for k, v in obj["model"].items() if torch.is_tensor(v)}
    if not tensors:
        raise ValueError(f"{path}: its 'model' holds no tensors")
    info = recorded_info(obj)
    if "variant" not in info:
        raise ValueError(
            f"{path} has no 'info' naming its variant; export it with StudentTeacher.export or ImageVolumeNet.export "
            "(TrainingCheckpoint export_fn '$@network_def.export'), or convert an official checkpoint with "
            "python -m unimiss_monai convert-checkpoint"
        )
    refuse_trained_model(info, path)
    bad = first_non_finite(tensors)
    if bad is not None:
        raise ValueError(f"{path}: tensor {bad} holds NaN or Inf; the run diverged, publish an earlier export")
    # a converted file's top-level variant now lives in info, the one place readers look
    extra = {k: v for k, v in obj.items() if k not in ("model", "info", "variant")}
    return {"model": tensors, "info": info, **extra}


def _use_smoke(path: str | os.PathLike) -> str:
    """How to use the smoke-size export ``path``, which publishing would only make every default fine-tune fail on."""
    return f"fine-tune from them with --pretrained_path {shlex.quote(str(path))} and the same overlay"


def export_next_step(path: str | os.PathLike) -> str:
    """What to do with the export ``path`` of a pretraining run, as the run's last log line says: publish it for the
    fine-tune bundles, or, for smoke-size weights (which :func:`publish_pretrained` refuses), fine-tune from it with
    the run's overlay. An export that cannot be read gets the publish command, which then says what is wrong. The
    path is absolute: the command is pasted into another bundle's folder (a fine-tune's configs are relative to it)."""
    path = os.path.abspath(path)
    try:  # its info alone: publish-pretrained checks the tensors when it is run
        info = recorded_info(load_torch_file(path, "pretraining export"))
    except (OSError, ValueError):
        info = {}
    widths = {k: info[k] for k in INFO_WIDTHS if k in info}
    if info.get("variant") and smoke_sized(info["variant"], widths):
        return f"smoke-size weights, which publish-pretrained refuses: {_use_smoke(path)}"
    return f"publish it with: python -m unimiss_monai publish-pretrained {shlex.quote(str(path))}"


def _differences(old: Mapping[str, Any], new: dict[str, Any]) -> list[str]:
    """Why ``new`` would not be a drop-in replacement of ``old``: another variant, other tensors or shapes."""
    old_model = old.get("model") if isinstance(old.get("model"), Mapping) else old
    old_sd = {k: v for k, v in old_model.items() if torch.is_tensor(v)}
    old_info = old.get("info") if isinstance(old.get("info"), Mapping) else {}
    out = []
    old_variant = old_info.get("variant") or detect_variant(old_sd)
    if old_info.get("variant") is not None and old_variant != new["info"]["variant"]:
        out.append(f"variant {old_variant} -> {new['info']['variant']}")
    # UniMiSS exports record no recipe; an intra-inter one does (its slice encoder is what fine-tuning loads)
    old_recipe, new_recipe = old_info.get("recipe", "unimiss"), new["info"].get("recipe", "unimiss")
    if old_recipe != new_recipe:
        out.append(f"recipe {old_recipe} -> {new_recipe}")
    new_sd = new["model"]
    for k in sorted(set(old_sd) | set(new_sd)):
        if k not in new_sd:
            out.append(f"{k} dropped")
        elif k not in old_sd:
            out.append(f"{k} added")
        elif old_sd[k].shape != new_sd[k].shape:
            out.append(f"{k} {tuple(old_sd[k].shape)} -> {tuple(new_sd[k].shape)}")
    return out


def _published_from(old: Mapping[str, Any], digest: str, new: dict[str, Any]) -> bool:
    """Whether the published ``old`` was made from the file of SHA-256 ``digest`` and still holds its tensors."""
    source = (old.get("info") or {}).get("source") if isinstance(old.get("info"), Mapping) else None
    if not isinstance(source, Mapping) or source.get("sha256") != digest:
        return False
    old_model = old.get("model") if isinstance(old.get("model"), Mapping) else {}
    return all(torch.is_tensor(old_model.get(k)) and torch.equal(old_model[k], v) for k, v in new["model"].items())


def check_export_target(model_path: str | os.PathLike, bundle_root: str | os.PathLike) -> None:
    """Refuse, in one line, a pretraining run whose export ``model_path`` is the published weights the fine-tuning
    bundles load by default (``<bundle_root>/models/model.pt``, or :data:`DEFAULT_DST`): a run, a smoke run
    included, would replace them without the checks of ``publish-pretrained``."""
    target = Path(model_path).expanduser().resolve()
    published = {(Path(bundle_root).expanduser() / "models" / "model.pt").resolve(), DEFAULT_DST.resolve()}
    if target in published:
        raise ValueError(
            f"model_path {model_path} is where the published pretrained weights live, which the fine-tuning bundles "
            "load by default: write the run elsewhere (--output_dir) and publish its export with python -m "
            "unimiss_monai publish-pretrained"
        )


def publish_pretrained(src: str, dst: str | None = None, force: bool | str = False) -> dict[str, Any]:
    """Command ``publish-pretrained``: validate the pretraining export ``src`` and publish it to ``dst``.

    ``src`` must load with ``weights_only=True`` and hold ``model`` (finite tensors) and ``info`` (see
    :func:`unimiss_monai.networks.backbone_info`), or the top-level ``variant`` ``convert-checkpoint`` writes instead,
    which the published file records in ``info``. An existing ``dst`` of another variant or with other tensor names
    or shapes is only replaced with ``force``; an existing ``dst`` is always kept as ``<dst>.prev``. The new file is
    written atomically, with ``info["source"] = {"path", "sha256"}`` of ``src`` and ``info["published"]`` (UTC,
    ISO 8601) added.

    Args:
        src: the exported ``model.pt`` of a pretraining run, or that run's output folder (its ``models/model.pt``);
            a ``convert-checkpoint`` output is taken too.
        dst: where to publish; defaults to the repository's ``bundles/unimiss_pretraining/models/model.pt``, which
            the fine-tuning bundles load by default.
        force: replace a ``dst`` of another variant or shape, or publish smoke-size weights (``true``/``false``; the
            old file is still kept).

    Returns:
        ``{"dst", "previous" (path or None), "variant", "tensors", "sha256"}``.
    """
    force = as_bool(force, "force")
    src_path = Path(weights_in_folder(src, "publish-pretrained: source")).resolve()
    export = read_export(src_path)  # a missing or bad source is said first, whatever the destination
    dst_path = Path(dst) if dst else _default_dst()
    if dst_path.exists() and dst_path.resolve() == src_path:
        raise ValueError(f"publish-pretrained: {src} is already {dst_path}; pass the export of a pretraining run")
    if dst_path.is_dir():  # before any comparison: a folder holds no weights to differ from
        raise ValueError(f"publish-pretrained: --dst {dst_path} is a folder, not a file: give the path of a file "
                         f"(e.g. --dst {dst_path / 'model.pt'})")
    widths = {k: export["info"][k] for k in INFO_WIDTHS if k in export["info"]}
    if smoke_sized(export["info"]["variant"], widths) and not force:
        # the fine-tune bundles build full-size networks by default and their smoke overlays load no pretrained
        # weights, so published smoke weights would only make every default fine-tune fail
        raise ValueError(
            f"publish-pretrained: {src} holds smoke-size weights (embed_dims {tuple(widths.get('embed_dims', ()))}, a "
            f"run with smoke.yaml or demo.yaml), which no fine-tune bundle loads by default; {_use_smoke(src)}, or "
            "pass --force true to publish them anyway"
        )
    previous, digest = None, sha256_file(src_path)
    if dst_path.exists():
        try:
            old = load_torch_file(dst_path, "publish-pretrained: destination")
            diff = _differences(old, export) if isinstance(old, Mapping) else ["not a state dict"]
        except ValueError as err:
            diff = [f"unreadable ({err})"]
        if not diff and _published_from(old, digest, export):  # a second copy of the same weights would be all it did
            print(f"publish-pretrained: {dst_path} already holds {src_path} (sha256 {digest[:12]}); nothing to do",
                  flush=True)
            return {"dst": str(dst_path), "previous": None, "variant": export["info"]["variant"],
                    "tensors": len(export["model"]), "sha256": digest}
        if diff and not force:
            raise ValueError(
                f"publish-pretrained: {dst_path} holds other weights than {src} ({len(diff)} differences: "
                f"{'; '.join(diff[:3])}{' ...' if len(diff) > 3 else ''}); every fine-tune bundle loads it, so pass "
                f"--force true to replace it (it is kept beside, as {dst_path.name}.prev or the next free .prev.N) or "
                "--dst elsewhere"
            )
        previous = keep_previous(dst_path)
    info = {
        **export["info"],
        "source": {"path": str(src_path), "sha256": digest},
        "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    save_torch({**export, "info": info}, dst_path)
    recipe = f"{info['recipe']} recipe, " if "recipe" in info else ""  # UniMiSS and UniMiSS+ exports record none
    print(
        f"publish-pretrained: {src_path} (sha256 {digest[:12]}, {recipe}variant "
        f"{info['variant']}, {len(export['model'])} "
        f"tensors) -> {dst_path}{f'; previous kept as {previous}' if previous else ''}",
        flush=True,
    )
    return {
        "dst": str(dst_path), "previous": str(previous) if previous else None, "variant": info["variant"],
        "tensors": len(export["model"]), "sha256": digest,
    }
