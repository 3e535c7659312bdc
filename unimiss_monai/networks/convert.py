"""Convert official UniMiSS / UniMiSS+ training checkpoints to this package's state dicts.

An official checkpoint (``main.py`` / ``main_UniMissPlus.py`` of github.com/YtongXie/UniMiSS-code) is a dict with a
``student`` state dict (keys ``module.backbone.*`` and ``module.head.*``, DDP-wrapped) and a ``teacher`` one
(``backbone.*``, ``head.*``). Inside the backbone the encoder lives under ``transformer.``. Every tensor keeps its
values and layout; only names change, so a converted model computes what the official one did.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from unimiss_monai.data.writers import check_output_file, save_torch
from unimiss_monai.networks.state_dict_diff import is_position_embedding, state_dict_differences
from unimiss_monai.networks.weights_file import is_official_checkpoint
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.serialization import load_torch_file

__all__ = ["convert_checkpoint", "convert_official_state_dict", "official_key_to_ours"]

_DIM = {"2D": "2d", "3D": "3d"}
# --dims -> the official dimension tags kept
_DIMS = {"2": ("2D",), "3": ("3D",), "both": ("2D", "3D")}


def _check_dims(dims, prefix: str = "") -> None:
    if str(dims) not in _DIMS:
        raise ValueError(f"{prefix}--dims is {dims!r}; choose 2, 3 or both (keep the 2D, the 3D or all "
                         "dimension-specific tensors)")


def _sr(rest: str) -> str:
    # the official reduction convs are attn.sr2D / attn.sr3D; ours sit in a ModuleDict
    return re.sub(r"attn\.sr([23])D\.", lambda m: f"attn.sr.{m.group(1)}d.", rest)


def official_key_to_ours(key: str, family: str) -> str | None:
    """Our name for an official backbone key (``module.backbone.`` / ``backbone.`` already removed), or ``None`` for a
    key this package has no place for. ``family`` is ``"mit"`` or ``"mitplus"``."""
    off = 0 if family == "mit" else 1  # the UniMiSS+ decoder numbers its stages from 1
    m = re.fullmatch(r"transformer\.(.+)", key)
    if m:
        k = m.group(1)
        rules = [
            (r"patch_embed([23]D)0\.(.+)", lambda g: f"stem.{_DIM[g[0]]}.0.0.{g[1]}"),
            (r"ConvBlock([23]D)0\.0\.(.+)", lambda g: f"stem.{_DIM[g[0]]}.0.0.{g[1]}"),
            (r"ConvBlock([23]D)1\.(\d)\.(.+)", lambda g: f"stem.{_DIM[g[0]]}.1.{g[1]}.{g[2]}"),
            (r"patch_embed([23]D)([1-4])\.(.+)", lambda g: f"patch_embeds.{int(g[1]) - 1}.{_DIM[g[0]]}.{g[2]}"),
            (r"pos_embed([23]D)([1-4])", lambda g: f"pos_embeds.{int(g[1]) - 1}.{_DIM[g[0]]}.weight"),
            (r"block([1-4])\.(\d+)\.(.+)", lambda g: f"blocks.{int(g[0]) - 1}.{g[1]}.{_sr(g[2])}"),
            (r"cls_tokens1", lambda g: "cls_token"),
            (r"cls_tokens([2-4])\.(.+)", lambda g: f"cls_proj.{int(g[0]) - 2}.{g[1]}"),
        ]
        prefix = "encoder."
    else:
        k = key
        rules = [
            (r"DecEmbed([23]D)(\d)\.(.+)", lambda g: f"up_embeds.{int(g[1]) - off}.{_DIM[g[0]]}.{g[2]}"),
            (r"DecPosEmbed([23]D)(\d)", lambda g: f"pos_embeds.{int(g[1]) - off}.{_DIM[g[0]]}.weight"),
            (r"Decblock(\d)\.(\d+)\.(.+)", lambda g: f"blocks.{int(g[0]) - off}.{g[1]}.{_sr(g[2])}"),
            (r"norm\.(.+)", lambda g: f"norm.{g[0]}"),
            (r"cls_tokens([0-2])\.(.+)", lambda g: f"cls_proj.{g[0]}.{g[1]}"),
            (r"TransposeConv([23]D)([12])\.(.+)", lambda g: f"tail.{_DIM[g[0]]}.{int(g[1]) - 1}.up.{g[2]}"),
            (r"DeConvBlock([23]D)([12])\.(.+)", lambda g: f"tail.{_DIM[g[0]]}.{int(g[1]) - 1}.refine.{g[2]}"),
        ]
        prefix = "decoder."
        rc = re.fullmatch(r"recon_conv([23]D)\.(.+)", k)
        if rc:
            return f"recon_head.{_DIM[rc.group(1)]}.{rc.group(2)}"
    for pattern, name in rules:
        g = re.fullmatch(pattern, k)
        if g:
            return prefix + name(g.groups())
    return None


def _head_key(key: str) -> str:
    return {"last_layer.weight_g": "last_layer.parametrizations.weight.original0",
            "last_layer.weight_v": "last_layer.parametrizations.weight.original1"}.get(key, key)


def _detect_official_family(keys) -> str:
    if any(".ConvBlock" in k or k.startswith("transformer.ConvBlock") for k in keys):
        return "mitplus"
    depth = len({k.split(".")[2] for k in keys if k.startswith("transformer.block1.")})
    return "mit_tiny" if depth == 1 else "mit_small"


def convert_official_state_dict(
    checkpoint: Mapping, variant: str | None = None, branch: str = "student", dims: str | int = "both"
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Map one branch of an official training checkpoint to ``(backbone_state_dict, dino_head_state_dict, info)``.

    Args:
        checkpoint: the loaded official checkpoint (``{"student": ..., "teacher": ...}``) or one branch's state dict.
        variant: ``mit_tiny``, ``mit_small`` or ``mitplus``; detected from the keys when ``None``.
        branch: ``"student"`` or ``"teacher"``.
        dims: keep the ``2``D, the ``3``D or ``"both"`` dimension-specific tensors.

    Returns:
        our backbone keys (``encoder.*``, ``decoder.*``, ``recon_head.*``), the DINO head keys, and
        ``info = {"variant", "skipped": [official keys not mapped]}``.
    """
    if branch not in ("student", "teacher"):
        raise ValueError(f"branch must be 'student' or 'teacher', got {branch!r}")
    _check_dims(dims)
    if is_official_checkpoint(checkpoint):
        if branch not in checkpoint:
            raise ValueError(f"checkpoint has no {branch!r} entry (it has {sorted(checkpoint)[:6]})")
        sd = checkpoint[branch]
    else:
        sd = checkpoint
    backbone, head = {}, {}
    for k, v in sd.items():
        for p in ("module.backbone.", "backbone.", "module.head.", "head."):
            if k.startswith(p):
                (head if "head" in p else backbone)[k[len(p):]] = v
                break
    if not backbone:
        raise ValueError(
            "no 'backbone.' / 'module.backbone.' keys found: not an official UniMiSS/UniMiSS+ training checkpoint"
        )
    found = _detect_official_family(backbone)
    if variant is None:
        variant = found
    elif (variant == "mitplus") != (found == "mitplus") or (found != "mitplus" and variant != found):
        raise ValueError(f"checkpoint looks like variant {found}, --variant is {variant}; pass --variant {found}")
    family = "mitplus" if variant == "mitplus" else "mit"
    keep = _DIMS[str(dims)]
    drop = {"2D", "3D"} - set(keep)
    out, skipped = {}, []
    for k, v in backbone.items():
        if any(re.search(rf"{d}(\d|\.|$)", k) for d in drop):
            continue
        new = official_key_to_ours(k, family)
        if new is None:
            skipped.append(k)
        else:
            out[new] = v.detach().clone()
    heads = {_head_key(k): v.detach().clone() for k, v in head.items()}
    return out, heads, {"variant": variant, "skipped": skipped}


def _check_destination(src: str, dst: str, force: bool) -> None:
    """Refuse a ``dst`` that is ``src`` (also through a link), which even ``force`` never replaces; then what every
    writer refuses (:func:`check_output_file`: a folder, a path under a file, or an existing file unless ``force``)."""
    source, target = Path(src), Path(dst)
    if target.resolve() == source.resolve() or (target.exists() and os.path.samefile(source, target)):
        raise ValueError(f"convert-checkpoint: DST {dst} is the source checkpoint {src}; writing there would destroy "
                         "it: pass another DST")
    check_output_file(dst, force, "convert-checkpoint: DST", "--force")


def _examples(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def convert_checkpoint(
    src: str, dst: str, variant: str | None = None, branch: str = "student", dims: str | int = "both",
    force: bool = False,
) -> dict:
    """Command ``convert-checkpoint``: convert an official UniMiSS / UniMiSS+ checkpoint ``src`` to ``dst``.

    ``dst`` holds ``{"model": backbone_state_dict, "head": dino_head_state_dict, "variant": ...}``, loadable with
    :func:`unimiss_monai.networks.load_pretrained` or a task network's ``pretrained=``. The conversion is checked
    against a freshly built model of the variant (keys, and shapes apart from position embeddings, which
    ``load_pretrained`` resizes); the report is printed and returned. A conversion with missing, unexpected or
    differently shaped tensors, or with NaN / Inf values, is refused with one line after the report, and nothing is
    written. ``dst`` is written atomically (a kill leaves no half-written file).

    Args:
        src: official checkpoint (``checkpoint.pth``), read weights-only (tensors, containers and an
            ``argparse.Namespace``): a file holding any other object is refused before anything in it runs.
        dst: output file; never ``src`` itself, and an existing file only with ``force``.
        variant: ``mit_tiny``, ``mit_small`` or ``mitplus`` (detected when omitted).
        branch: ``student`` (what the official fine-tuning code loads) or ``teacher``.
        dims: ``2``, ``3`` or ``both``.
        force: replace an existing ``dst``.
    """
    from unimiss_monai.networks.nets.backbone import build_backbone
    from unimiss_monai.utils.args import as_bool

    force = as_bool(force, "force")
    _check_dims(dims, "convert-checkpoint: ")
    if os.path.isdir(src):
        raise ValueError(f"convert-checkpoint: {src!r} is a folder; give the official checkpoint file in it "
                         "(e.g. checkpoint.pth)")
    if not os.path.isfile(src):
        raise ValueError(f"convert-checkpoint: {src!r} does not exist")
    _check_destination(src, dst, force)  # before the (long) conversion: nothing is read to be refused afterwards
    # official files pickle the training script's argparse arguments beside the tensors; nothing else is unpickled
    ckpt = load_torch_file(src, "convert-checkpoint: source", allowed=[argparse.Namespace])
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"convert-checkpoint: {src} holds a {type(ckpt).__name__}, not an official training checkpoint")
    try:
        sd, head, info = convert_official_state_dict(ckpt, variant, branch, dims)
    except ValueError as err:
        raise ValueError(f"convert-checkpoint: {src}: {err}") from None
    spatial = (2, 3) if str(dims) == "both" else (int(dims),)
    ref = build_backbone(info["variant"], spatial).state_dict()
    missing, unexpected, shape = state_dict_differences(ref, sd, is_position_embedding)
    report = {
        "variant": info["variant"], "branch": branch, "dims": str(dims), "converted": len(sd),
        "head_tensors": len(head), "skipped_official": info["skipped"], "missing": missing,
        "unexpected": unexpected, "shape_mismatch": shape,
    }
    bad = first_non_finite(sd, "model") or first_non_finite(head, "head")
    clean = not (missing or unexpected or shape) and bad is None
    if clean:  # written before the report says so: a write refused (a full disk) leaves no "-> dst" line behind
        _check_destination(src, dst, force)  # a file put there during the conversion is not replaced either
        save_torch({"model": sd, "head": head, "variant": info["variant"]}, dst)
    print(
        f"convert-checkpoint: {src} [{branch}] -> {dst if clean else '(nothing written)'}: variant {info['variant']}, "
        f"{len(sd)} backbone tensors, {len(head)} head tensors; missing {len(missing)}, unexpected {len(unexpected)}, "
        f"shape mismatches {len(shape)}, unmapped official {len(info['skipped'])}"
    )
    for name in ("missing", "unexpected", "shape_mismatch", "skipped_official"):
        if report[name]:
            print(f"  {name}: {', '.join(report[name][:10])}")
    if missing or unexpected or shape:
        found = [f"{len(v)} {k} (e.g. {_examples(v)})" for k, v in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", shape)) if v]
        raise ValueError(f"convert-checkpoint: {src} does not convert cleanly to {info['variant']} ({'; '.join(found)}); "
                         "nothing was written: check --variant and --dims")
    if bad is not None:
        raise ValueError(f"convert-checkpoint: {src}: the {branch} tensor {bad} holds NaN or Inf; nothing was written: "
                         "convert a checkpoint of an earlier epoch")
    return report
