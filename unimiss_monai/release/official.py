"""``release-official``: an official UniMiSS / UniMiSS+ checkpoint as a ready-to-fine-tune pretraining bundle release.

One command converts the checkpoint (:func:`unimiss_monai.networks.convert.convert_official_state_dict`, every tensor
kept, only names change), checks the result against a freshly built backbone of the variant, records what the weights
are (variant and widths, the 2D/3D input sizes their position embeddings were trained at, the source file and its
sha256, the branch) and packages the pretraining bundle with them (:func:`.package.build_release`). Variant names are
the networks' own: ``mit_tiny`` / ``mit_small`` (UniMiSS, ECCV 2022) and ``mitplus`` (UniMiSS+, TPAMI 2024).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from unimiss_monai.networks.convert import convert_official_state_dict
from unimiss_monai.networks.state_dict_diff import is_position_embedding, state_dict_differences
from unimiss_monai.networks.variants import VARIANTS, get_variant, stage_grids
from unimiss_monai.release.archive import sha256_file
from unimiss_monai.release.package import build_release
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.repository import repository_bundle
from unimiss_monai.utils.serialization import load_torch_file

__all__ = ["PAPERS", "official_payload", "release_official"]

#: which paper (and official code folder) each variant comes from
PAPERS = {"mit_tiny": "UniMiSS (ECCV 2022)", "mit_small": "UniMiSS (ECCV 2022)", "mitplus": "UniMiSS+ (TPAMI 2024)"}


def _trained_size(sd: dict, variant: str, dim: int) -> list[int] | None:
    """The input size the first encoder position embedding of ``dim`` D was built for: the variant's default when it
    fits (the official scripts' 224 / 16x96x96), else the square 2D size that fits; ``None`` when nothing fits."""
    weight = sd.get(f"encoder.pos_embeds.0.{dim}d.weight")
    if weight is None:
        return None
    cfg = get_variant(variant)
    patches = weight.shape[1] - 1  # the CLS entry comes first
    candidates = [tuple(cfg.img_size(dim))]
    if dim == 2:
        candidates += [(s, s) for s in range(32, 1025, 16)]
    for size in candidates:
        try:
            if math.prod(stage_grids(cfg, dim, size)[0]) == patches:
                return list(size)
        except ValueError:
            continue
    return None


def official_payload(src: str, variant: str | None = None, branch: str = "student") -> dict[str, Any]:
    """``{"model": backbone state dict, "info": {...}}`` of an official checkpoint, checked against the variant.

    Raises:
        ValueError (one line naming the file): missing file, unknown variant, not an official checkpoint, keys or
            shapes that do not fit a freshly built backbone of the variant, tensors holding NaN or Inf.
    """
    from unimiss_monai.networks import build_backbone

    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"release-official: unknown variant {variant!r}; choose one of {', '.join(sorted(VARIANTS))}")
    if os.path.isdir(src):
        raise ValueError(f"release-official: {src} is a folder; pass the official checkpoint.pth file in it")
    if not os.path.isfile(src):
        raise ValueError(f"release-official: {src} does not exist; pass an official UniMiSS/UniMiSS+ checkpoint.pth")
    # official files pickle the training script's argparse arguments beside the tensors; nothing else is unpickled
    ckpt = load_torch_file(src, "release-official: source", allowed=[argparse.Namespace])
    if not isinstance(ckpt, dict):
        raise ValueError(f"release-official: {src} holds a {type(ckpt).__name__}, not an official training checkpoint")
    try:
        sd, _, conv = convert_official_state_dict(ckpt, variant, branch, "both")
    except ValueError as err:
        raise ValueError(f"release-official: {src}: {err}") from None
    variant = conv["variant"]
    ref = build_backbone(variant, (2, 3)).state_dict()
    missing, unexpected, shape = state_dict_differences(ref, sd, is_position_embedding)
    if missing or unexpected or shape or conv["skipped"]:
        first = (missing or unexpected or shape or conv["skipped"])[0]
        raise ValueError(
            f"release-official: {src} does not convert cleanly to {variant} ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(shape)} of another shape, {len(conv['skipped'])} unmapped official tensors, e.g. {first}); "
            "check --variant, or use convert-checkpoint to inspect the report"
        )
    bad = first_non_finite(sd)
    if bad is not None:
        raise ValueError(f"release-official: {src}: the {branch} tensor {bad} holds NaN or Inf; release a checkpoint of "
                         "an earlier epoch")
    cfg = get_variant(variant)
    info: dict[str, Any] = {"variant": variant, "family": cfg.family}
    info.update({k: list(getattr(cfg, k)) for k in ("embed_dims", "depths", "num_heads")})
    info["spatial_dims"] = [2, 3]
    for dim in (2, 3):
        size = _trained_size(sd, variant, dim)
        if size is not None:
            info[f"img_size{dim}d"] = size
    digest = sha256_file(src)
    info["source"] = {"official": PAPERS[variant], "file": os.path.basename(src), "sha256": digest, "branch": branch}
    info["training"] = (
        f"official {PAPERS[variant]} self-supervised pretraining by its authors, {branch} backbone of "
        f"{os.path.basename(src)} (sha256 {digest[:12]}), converted by unimiss_monai; a backbone to fine-tune, not a "
        "task model: it predicts nothing on its own"
    )
    return {"model": sd, "info": info}


def release_official(
    src: str,
    variant: str | None = None,
    out: str = "dist",
    branch: str = "student",
    bundle: str | None = None,
    name: str | None = None,
    base_url: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Command ``release-official``: convert an official UniMiSS / UniMiSS+ checkpoint and write the pretraining bundle
    release (zip, sha256, ``model_info.json`` entry, ``large_files.yml``) into ``out``.

    Args:
        src: the official ``checkpoint.pth`` (read weights-only; an ``argparse.Namespace`` is the only class allowed).
        variant: ``mit_tiny``, ``mit_small`` (UniMiSS) or ``mitplus`` (UniMiSS+); detected from the keys when omitted.
        out: output folder.
        branch: ``student`` (what the official fine-tuning code loads) or ``teacher``.
        bundle: the bundle whose configs and docs ship (default: this repository's ``bundles/unimiss_pretraining``).
        name: release name (default: the bundle's folder name, ``unimiss_pretraining``, which the fine-tuning
            bundles find as their sibling).
        base_url: where the files will be published (see ``package-bundle``).
        overwrite: replace a release zip of the same name and version with other bytes.
    """
    payload = official_payload(src, variant, branch)
    bundle_dir = Path(bundle) if bundle else repository_bundle("unimiss_pretraining", "release-official", "--bundle")
    if not bundle_dir.is_dir():
        raise ValueError(f"release-official: bundle folder {bundle_dir} does not exist; pass --bundle bundles/unimiss_pretraining")
    info = payload["info"]
    print(f"release-official: {src} [{branch}] -> variant {info['variant']}, {len(payload['model'])} backbone tensors, "
          f"trained at 2D {info.get('img_size2d')} / 3D {info.get('img_size3d')}", flush=True)
    return build_release(bundle_dir, payload, out, base_url=base_url, name=name, overwrite=overwrite,
                         source=f"the weights converted from {src}")
