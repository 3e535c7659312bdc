"""Load pretraining checkpoints into UniMiSS networks, with a report of what was loaded; describe a backbone for export.

A pretraining export is ``{"model": backbone_state_dict, "info": backbone_info(backbone)}``: ``info`` names the
variant, its widths and the input sizes its position embeddings were trained at, so loading can resize those
embeddings to the target network's patch grids exactly and refuse weights of another variant.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unimiss_monai.networks.blocks.pos_embed import PositionEmbedding, resize_pos_embed
from unimiss_monai.networks.checkpoint_layout import describe_layout, detect_variant, encoder_layout, layout_fix, registered_variant
from unimiss_monai.networks.embedding_grid import training_grid
from unimiss_monai.networks.inflate import STEM_CONV, encoder_pos_grids, inflate_2d_to_3d, source_2d_key
from unimiss_monai.networks.nets.encoder import MiTEncoder
from unimiss_monai.networks.nets.image_volume import ImageVolumeNet
from unimiss_monai.networks.recipe_weights import SLICE_ENCODER_PREFIX, check_recipe, intra_inter_info
from unimiss_monai.networks.untrained_dims import set_aside_untrained
from unimiss_monai.networks.variants import VARIANTS, VariantConfig, get_variant
from unimiss_monai.networks.weights_file import is_official_checkpoint, recorded_info, refuse_trained_model
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.finite import NonFiniteWeightsError, refuse_non_finite_weights
from unimiss_monai.utils.serialization import load_torch_file

__all__ = [
    "LoadReport", "PRETRAINED", "TRAINED", "backbone_info", "check_info", "detect_variant", "encoder_layout",
    "load_pretrained", "read_checkpoint", "read_state_dict",
]

logger = logging.getLogger(__name__)

#: how messages name the file: pretraining weights, or a bundle's own trained model (evaluation, inference), so that a
#: user checking a trained model is not told about pretraining
PRETRAINED, TRAINED = "pretrained checkpoint", "trained model"
#: the :class:`VariantConfig` fields an export records and a load compares
INFO_WIDTHS = ("embed_dims", "depths", "num_heads")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, key by key, and how much of the model's encoder it initialised."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    inflated: list[str] = field(default_factory=list)
    #: 3D tensors outside the encoder (a decoder's) that a 2D-only checkpoint has in 2D only: left at random init
    not_inflated: list[str] = field(default_factory=list)
    #: checkpoint tensors of a spatial dimension its pretraining never trained (``info["trained_dims"]``): not loaded
    set_aside: list[str] = field(default_factory=list)
    checkpoint_variant: str | None = None
    source: str = "<state dict>"
    #: what the file is (:data:`PRETRAINED` or :data:`TRAINED`), as the summary names it
    what: str = PRETRAINED
    info: dict = field(default_factory=dict)
    encoder_loaded: int = 0
    encoder_total: int = 0
    encoder_resized: int = 0
    encoder_inflated: int = 0

    def summary(self) -> str:
        """One line: file, variant, encoder tensors loaded (how many of them inflated / resized), then what was not
        loaded: decoder tensors left random, checkpoint tensors set aside."""
        origin = "info" if self.info.get("variant") else "key layout"
        lead = "pretrained" if self.what == PRETRAINED else self.what  # "pretrained <file>": the pretraining wording
        # inflated and resized tensors are among the loaded ones: said inside its parenthesis, so no reader adds them up
        parts = ([f"{self.encoder_inflated} of them inflated 2D->3D", f"{self.encoder_resized} resized"]
                 if self.inflated else [f"{self.encoder_resized} of them resized"])
        return (
            f"{lead} {self.source}: variant {self.checkpoint_variant or 'unknown'} (from {origin}), "
            f"{self.encoder_loaded}/{self.encoder_total} encoder tensors loaded ({', '.join(parts)})"
            + (f"; {len(self.not_inflated)} decoder 3D tensors left random (only the encoder is inflated)"
               if self.not_inflated else "")
            + (f"; {len(self.set_aside)} never-trained checkpoint tensors set aside, not loaded"
               if self.set_aside else "")
        )

    def __str__(self) -> str:
        lines = [
            self.summary(),
            f"  all tensors: {len(self.matched)} loaded ({len(self.resized)} of them position embeddings resized, "
            f"{len(self.adapted)} input convs adapted, {len(self.inflated)} inflated 2D->3D), "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} shape-mismatched",
        ]
        for name in ("missing", "unexpected", "mismatched", "resized", "adapted", "inflated", "not_inflated", "set_aside"):
            keys = getattr(self, name)
            if keys:
                lines.append(f"  {name}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        return "\n".join(lines)


def read_checkpoint(
    path_or_state_dict: str | os.PathLike | Mapping[str, Any], what: str = PRETRAINED,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, info)`` from a file or dict.

    The state dict is flat ``{name: tensor}`` from this package's ``{"model": ...}``, ``{"state_dict": ...}`` or a bare
    state dict, with ``module.`` (DDP) prefixes removed; ``info`` is the file's ``info`` dict (``{}`` when absent; a
    converted official checkpoint's top-level ``variant`` becomes ``{"variant": ...}``). ``what`` is how errors name
    the file (:data:`PRETRAINED` or :data:`TRAINED`).
    """
    path = os.fspath(path_or_state_dict) if isinstance(path_or_state_dict, (str, os.PathLike)) else None
    if path is not None and not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} does not exist; pass the path of a .pt/.pth file")
    obj = path_or_state_dict if path is None else load_torch_file(path, what)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what} holds a {type(obj).__name__}, expected a dict of tensors")
    if is_official_checkpoint(obj):
        raise ValueError(
            "this is an official UniMiSS/UniMiSS+ training checkpoint; convert it first: "
            f"python -m unimiss_monai convert-checkpoint SRC DST --variant <{'|'.join(sorted(VARIANTS))}>"
        )
    info = recorded_info(obj)
    for key in ("model", "state_dict", "network"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if obj and all(str(k).startswith(("student.", "teacher.")) for k in obj):
        # a pretraining run's resume checkpoint: both networks with their heads, not the exported backbone
        raise ValueError(
            "this is a pretraining run's resume checkpoint (student and teacher networks); pass its exported backbone "
            "instead: <output_dir>/models/model.pt of that run"
        )
    out = {}
    for k, v in obj.items():
        if torch.is_tensor(v):
            out[k[7:] if k.startswith("module.") else k] = v
    if not out:
        raise ValueError(f"{what} contains no tensors")
    refuse_non_finite_weights(out, what if path is None else f"{what} {path}")
    return out, info


def read_state_dict(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The flat state dict of :func:`read_checkpoint`."""
    return read_checkpoint(path_or_state_dict)[0]


def _find_encoder(model: nn.Module) -> tuple[str, MiTEncoder | None]:
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, MiTEncoder)), ("", None))


def backbone_info(backbone: nn.Module) -> dict[str, Any]:
    """What an exported backbone is: ``variant``, ``family``, widths (``embed_dims``, ``depths``, ``num_heads``, as
    :data:`VARIANTS` names them), ``spatial_dims`` and the input size of each dimension's position embeddings
    (``img_size2d`` / ``img_size3d``). Plain lists and strings, so ``torch.load(weights_only=True)`` reads it.

    An :class:`ImageVolumeNet` (intra-inter recipe) adds ``recipe: "intra_inter"``, ``slice_backbone`` and its
    constructor arguments; with a MONAI ResNet slice backbone ``variant`` is the ResNet's name and ``family``
    ``"resnet"``.

    Args:
        backbone: a module holding a :class:`MiTEncoder` (a backbone, a task network or the encoder itself), or an
            :class:`ImageVolumeNet`.
    """
    if isinstance(backbone, ImageVolumeNet):
        mit = None if backbone.slice_encoder.is_resnet else backbone_info(backbone.slice_encoder.backbone)
        return intra_inter_info(backbone, mit)
    _, encoder = _find_encoder(backbone)
    if encoder is None:
        raise TypeError(f"backbone_info: {type(backbone).__name__} holds no MiTEncoder")
    cfg = encoder.config
    info: dict[str, Any] = {"variant": cfg.name, "family": cfg.family}
    info.update({k: list(getattr(cfg, k)) for k in INFO_WIDTHS})
    info["spatial_dims"] = list(encoder.spatial_dims)
    info.update({f"img_size{d}d": list(cfg.img_size(d)) for d in encoder.spatial_dims})
    return info


def _fmt(name: str, widths: Mapping[str, Any]) -> str:
    return f"{name} ({', '.join(f'{k} {tuple(v)}' for k, v in widths.items())})" if widths else name


def _has_widths(variant: str, widths: Mapping[str, Any], preset: str | None = None) -> bool:
    """Whether ``widths`` (some of :data:`INFO_WIDTHS`) are those of ``variant`` at ``preset`` (None: its defaults,
    what the bundles build without an overlay)."""
    config = get_variant(variant, preset=preset)
    return all(tuple(v) == tuple(getattr(config, k)) for k, v in widths.items())


def smoke_sized(variant: str, widths: Mapping[str, Any]) -> bool:
    """Whether ``widths`` (some of :data:`INFO_WIDTHS`) are those of the ``"smoke"`` preset of ``variant``: the tiny
    network of every bundle's ``smoke.yaml`` and ``demo.yaml``, whose weights fit no bundle's default configs."""
    return variant in VARIANTS and bool(widths) and _has_widths(variant, widths, "smoke")


def check_info(info: Mapping[str, Any], config: VariantConfig) -> None:
    """Raise a one-line ``ValueError`` when ``info`` names another variant or other widths than ``config``."""
    if not info or "variant" not in info:
        return
    theirs = {k: tuple(info[k]) for k in INFO_WIDTHS if k in info}
    ours = {k: tuple(getattr(config, k)) for k in theirs}
    if info["variant"] == config.name and theirs == ours:
        return
    if info["variant"] in VARIANTS:
        base = get_variant(info["variant"])
        extra = [f"{k}={v}" for k, v in theirs.items() if tuple(getattr(base, k)) != v]
        fix = f"build the model with variant={info['variant']!r}{' and ' + ', '.join(extra) if extra else ''}"
    else:
        fix = f"this package defines no variant {info['variant']!r} (it has {sorted(VARIANTS)}); use other weights"
    overlays = info.get("overlays")
    if isinstance(overlays, list) and overlays and all(isinstance(o, str) for o in overlays):
        # a release records the overlays its weights were trained with: what a bundle user changes (the command line)
        owner = info.get("bundle") if isinstance(info.get("bundle"), str) else "their bundle"
        fix = (f"these weights fit {owner}'s configs with {' + '.join(overlays)} only: run with that bundle's "
               f"{'overlays' if len(overlays) > 1 else 'overlay'} of the same name added to --config_file, or choose "
               f"weights of this size (in Python: {fix})")
    elif info["variant"] == config.name and (
            (smoke_sized(config.name, theirs) and _has_widths(config.name, ours))
            or (smoke_sized(config.name, ours) and _has_widths(config.name, theirs))):
        # without a record, the usual cause: weights of a smoke or demo run with a full-size model, or the other way
        # round; the fix is an overlay on the command line, not a constructor argument
        fix = ("these are smoke-size weights (a run with smoke.yaml or demo.yaml): add this bundle's "
               "configs/smoke.yaml (or demo.yaml) to --config_file, or use full-size weights"
               if smoke_sized(config.name, theirs) else
               "the model is smoke-size (smoke.yaml or demo.yaml in --config_file) and these are full-size weights: "
               "drop that overlay, or use the weights of a smoke run")
    raise ValueError(f"weights are {_fmt(info['variant'], theirs)}, model is {_fmt(config.name, ours)}; {fix}")


def _align_prefix(sd: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    candidates = [sd, {f"encoder.{k}": v for k, v in sd.items()}]
    candidates.append({k[8:]: v for k, v in sd.items() if k.startswith("encoder.")})
    # the slice encoder of an intra-inter export, as a bare encoder or a task network's encoder; its other tensors
    # (projection, inter-slice transformer, predictor) keep their names and show as unexpected
    n = len(SLICE_ENCODER_PREFIX)
    for pre in ("", "encoder."):
        candidates.append({(pre + k[n:] if k.startswith(SLICE_ENCODER_PREFIX) else k): v for k, v in sd.items()})
    return max(candidates, key=lambda c: len(model_keys & set(c)))


def _adapt_in_channels(w: torch.Tensor, c: int) -> torch.Tensor:
    if w.shape[1] == 1:
        return w.repeat_interleave(c, dim=1)
    mean = w.mean(dim=1, keepdim=True) * (w.shape[1] / c)
    return mean.repeat_interleave(c, dim=1)


def load_pretrained(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
    strict: bool | str = False,
    allow_partial: bool | str = False,
    what: str = PRETRAINED,
) -> LoadReport:
    """Load a pretraining checkpoint (``{"model": backbone.state_dict(), "info": backbone_info(backbone)}``, an older
    file without ``info``, or a converted official one) into ``model`` (a backbone, a task network or a bare encoder),
    matching keys by name.

    Position embeddings (2D and 3D, encoder and decoder) trained at another input size are interpolated to the model's
    patch grids (bicubic 2D / trilinear 3D, the CLS entry kept apart); the training grid comes from ``info``, else
    from the variant's default size, else from a uniform rescale of the model's grid (else the load is refused). A
    first conv trained with other input channels is adapted (repeated, or averaged and repeated). Decoder and head
    tensors may stay untrained (they are task-specific); encoder tensors may not unless ``allow_partial``. A 2D-only
    checkpoint loaded into a 3D model has its encoder inflated to 3D (:mod:`unimiss_monai.networks.inflate`); its
    decoder is not, so the decoder's 3D tensors stay random (``LoadReport.not_inflated``). Tensors of a dimension its
    pretraining never trained (``info["trained_dims"]``) are set aside first (:mod:`.untrained_dims`). Logs one line
    (file, variant, encoder tensors loaded, how many of them inflated or resized) at INFO and the full report at DEBUG.

    Args:
        model: the network to initialise.
        path_or_state_dict: a checkpoint path or dict.
        strict: raise unless every model tensor is loaded and every checkpoint tensor used; accepts
            ``"true"``/``"false"``.
        allow_partial: load even when encoder tensors would stay at their random initialisation (missing from the
            checkpoint, or of another shape after resizing); accepts ``"true"``/``"false"``.
        what: how the log line and errors name the file: :data:`PRETRAINED`, or :data:`TRAINED` when evaluation and
            inference load the bundle's own trained network.

    Returns:
        a :class:`LoadReport`.

    Raises:
        ValueError (one line, naming the file): unreadable file, an official training checkpoint (convert it first),
            a fine-tuned model of a bundle (its ``info`` records its head's classes) given as a pretraining file,
            weights whose ``info`` or key layout is another variant or other widths, a position embedding whose
            training grid is unknown (no ``info``, not the variant's default size, no uniform rescale of the model's
            grid; unless ``allow_partial``), or untrained encoder tensors; ``NonFiniteWeightsError`` (a ValueError):
            a tensor holding NaN or Inf.
    """
    is_path = isinstance(path_or_state_dict, (str, os.PathLike))
    source = os.fspath(path_or_state_dict) if is_path else "<state dict>"
    try:
        strict, allow_partial = as_bool(strict, "strict"), as_bool(allow_partial, "allow_partial")
        return _load(model, path_or_state_dict, source, strict, allow_partial, what)
    except ValueError as err:
        if is_path and source not in str(err):  # one line, naming the file; a NaN refusal keeps its type
            raise (NonFiniteWeightsError if isinstance(err, NonFiniteWeightsError) else ValueError)(f"{source}: {err}") from None
        raise


def _load(model: nn.Module, obj, source: str, strict: bool, allow_partial: bool, what: str) -> LoadReport:
    sd, info = read_checkpoint(obj, what)
    if what == PRETRAINED and not strict and not isinstance(obj, Mapping):
        # a file handed over as pretraining weights (--pretrained_path, pretrained=); a strict load asks for the whole
        # network (bench-infer loads a bundle's model so), and a dict comes from code that chose it (the release check)
        refuse_trained_model(info, source)
    check_recipe(info, model)
    target = model.state_dict()
    sd, set_aside = set_aside_untrained(_align_prefix(sd, set(target)), info)
    enc_name, encoder = _find_encoder(model)
    pos_modules = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, PositionEmbedding)}
    prefix = f"{enc_name}." if enc_name else ""
    if encoder is not None and 3 in encoder.spatial_dims:
        sd, inflated = inflate_2d_to_3d(sd, target, encoder_pos_grids(encoder, info, pos_modules), prefix)
    else:
        inflated = []
    report = LoadReport(checkpoint_variant=info.get("variant") or detect_variant(sd), source=source, info=info, what=what)
    report.inflated, report.set_aside = inflated, sorted(set_aside)
    if set_aside:
        logger.warning("%s: %d tensors were never trained (%s); %s", source, len(set_aside), next(iter(set_aside.values())),
                       "the 3D ones are inflated from the 2D ones" if inflated else "they are not loaded")
    if encoder is not None:
        check_info(info, encoder.config)
        theirs, ours = encoder_layout(sd), encoder_layout(target)
        if theirs is not None and theirs != ours:
            raise ValueError(
                f"checkpoint looks like {describe_layout(theirs)}, model is {registered_variant(ours) or describe_layout(ours)} "
                f"({encoder.config.name}); "
                f"{layout_fix(theirs)}"
            )
    loaded, why = {}, {}
    for k, v in sd.items():
        if k not in target:
            report.unexpected.append(k)
            continue
        want = target[k]
        if v.shape == want.shape:
            loaded[k] = v
            report.matched.append(k)
        elif k in pos_modules and v.ndim == 3 and v.shape[-1] == want.shape[-1]:
            m = pos_modules[k]
            old = training_grid(k, v.shape[1] - m.num_prefix, m, encoder, info)
            if old is None:
                # an encoder embedding resized from a guessed grid would be scrambled; a decoder's may stay untrained
                if not allow_partial and encoder is not None and k.startswith(prefix):
                    raise ValueError(
                        f"cannot tell the grid {k} was trained at ({v.shape[1] - m.num_prefix} patch entries, model "
                        # a file that has info needs no advice to have it
                        f"grid {tuple(m.grid)}); {'' if info else 'load a checkpoint exported with info, or '}"
                        "build the model at the img_size it was trained at"
                    )
                why[k] = f"{tuple(v.shape)}->{tuple(want.shape)}, training grid unknown"
                continue
            loaded[k] = resize_pos_embed(v, old, m.grid, m.num_prefix)
            report.matched.append(k)
            report.resized.append(f"{k} {old}->{m.grid}")
        elif STEM_CONV.search(k) and v.shape[0] == want.shape[0] and v.shape[2:] == want.shape[2:]:
            loaded[k] = _adapt_in_channels(v, want.shape[1])
            report.matched.append(k)
            report.adapted.append(f"{k} in_channels {v.shape[1]}->{want.shape[1]}")
        else:
            why[k] = f"{tuple(v.shape)}->{tuple(want.shape)}"
    report.mismatched, report.missing = [f"{k} {s}" for k, s in why.items()], [k for k in target if k not in loaded]
    if inflated:  # a 2D-only checkpoint: the 3D decoder tensors whose 2D counterparts it holds stay random
        report.not_inflated = [
            k for k in report.missing if not k.startswith(prefix) and source_2d_key(k) != k and source_2d_key(k) in sd
        ]
    enc_keys = [k for k in target if k.startswith(prefix)] if encoder is not None else []
    untrained = [k for k in enc_keys if k not in loaded]
    report.encoder_total, report.encoder_loaded = len(enc_keys), len(enc_keys) - len(untrained)
    report.encoder_resized = sum(r.startswith(prefix) for r in report.resized) if encoder is not None else 0
    report.encoder_inflated = sum(r.split(" ", 1)[0] in loaded for r in inflated)  # "<key> (<rule>)", encoder keys
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ValueError(f"strict loading failed: {report.summary()}; {len(report.missing)} missing, "
                         f"{len(report.unexpected)} unexpected, {len(report.mismatched)} shape-mismatched")
    if untrained and not allow_partial:
        named = ", ".join(f"{k} ({why.get(k) or set_aside.get(k, 'missing')})" for k in untrained[:3])
        # every one of another shape: the same variant at other widths (a size preset such as smoke, or overrides)
        cause = ("the weights have other widths (another size preset or overrides): build the model at theirs, or "
                 if all(k in why for k in untrained) else "load weights that hold them, or ")
        raise ValueError(
            f"{len(untrained)} of {len(enc_keys)} encoder tensors would stay untrained: {named}"
            f"{f' and {len(untrained) - 3} more' if len(untrained) > 3 else ''}; {cause}pass allow_partial=True "
            "(--allow_partial_pretrained on the command line) to train them from scratch"
        )
    model.load_state_dict(loaded, strict=False)
    logger.info("%s", report.summary())
    # the per-tensor details (missing, unexpected, resized names) for whoever asks for them
    logger.debug("%s", report)
    return report
