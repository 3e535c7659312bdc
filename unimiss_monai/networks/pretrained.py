"""Load pretraining checkpoints into UniMiSS networks, with a report of what was loaded."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from unimiss_monai.networks.blocks.pos_embed import PositionEmbedding, resize_pos_embed
from unimiss_monai.networks.nets.encoder import MiTEncoder

__all__ = ["LoadReport", "detect_variant", "load_pretrained", "read_state_dict"]

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, key by key."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    checkpoint_variant: str | None = None

    def __str__(self) -> str:
        lines = [
            f"pretrained ({self.checkpoint_variant or 'unknown variant'}): {len(self.matched)} tensors loaded, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.mismatched)} shape-mismatched, "
            f"{len(self.resized)} position embeddings resized, {len(self.adapted)} input convs adapted"
        ]
        for name in ("missing", "unexpected", "mismatched", "resized", "adapted"):
            keys = getattr(self, name)
            if keys:
                lines.append(f"  {name}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        return "\n".join(lines)


def read_state_dict(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a file or dict: this package's ``{"model": ...}``, ``{"state_dict": ...}`` or a
    bare state dict; ``module.`` (DDP) prefixes removed."""
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = os.fspath(path_or_state_dict)
        if not os.path.isfile(path):
            raise ValueError(f"pretrained checkpoint {path!r} does not exist; pass the path of a .pt/.pth file")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle errors come in many types
            raise ValueError(f"pretrained checkpoint {path!r} could not be read as a weights-only torch file: {e}") from e
    else:
        obj = path_or_state_dict
    if not isinstance(obj, Mapping):
        raise ValueError(f"pretrained checkpoint holds a {type(obj).__name__}, expected a dict of tensors")
    if "student" in obj or "teacher" in obj:
        raise ValueError(
            "this is an official UniMiSS/UniMiSS+ training checkpoint; convert it first: "
            "python -m unimiss_monai convert-checkpoint SRC DST --variant <mit_small|mit_tiny|mitplus>"
        )
    for key in ("model", "state_dict", "network"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    out = {}
    for k, v in obj.items():
        if torch.is_tensor(v):
            out[k[7:] if k.startswith("module.") else k] = v
    if not out:
        raise ValueError("pretrained checkpoint contains no tensors")
    return out


def detect_variant(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Guess the variant from the key layout: ``mitplus`` (two-block stem, extra patch convs), ``mit_tiny`` or
    ``mit_small`` (by blocks per stage), or ``None`` when there are no encoder keys."""
    enc = {re.sub(r"^(.*\.)?(?=(stem|patch_embeds|blocks|cls_token)\b)", "", k) for k in state_dict}
    if not any(k.startswith(("stem.", "patch_embeds.", "blocks.")) for k in enc):
        return None
    if any(re.match(r"stem\.\dd\.1\.", k) for k in enc) or any(".proj1." in k for k in enc if k.startswith("patch")):
        return "mitplus"
    depths = [len({k.split(".")[2] for k in enc if k.startswith(f"blocks.{i}.")}) for i in range(4)]
    return {(1, 1, 1, 1): "mit_tiny", (2, 3, 4, 3): "mit_small"}.get(tuple(depths), f"mit (depths {tuple(depths)})")


def _align_prefix(sd: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    candidates = [sd, {f"encoder.{k}": v for k, v in sd.items()}]
    candidates.append({k[8:]: v for k, v in sd.items() if k.startswith("encoder.")})
    return max(candidates, key=lambda c: len(model_keys & set(c)))


def _old_grid(n: int, new_grid: tuple[int, ...]) -> tuple[int, ...] | None:
    """The training grid of an embedding with ``n`` patch entries, assuming the model's aspect (or its depth)."""
    if math.prod(new_grid) == n:
        return new_grid
    t = (n / math.prod(new_grid)) ** (1 / len(new_grid))
    scaled = tuple(max(1, round(s * t)) for s in new_grid)
    if math.prod(scaled) == n:
        return scaled
    if len(new_grid) == 3 and n % new_grid[0] == 0 and math.isqrt(n // new_grid[0]) ** 2 == n // new_grid[0]:
        side = math.isqrt(n // new_grid[0])
        return (new_grid[0], side, side)
    return None


def _adapt_in_channels(w: torch.Tensor, c: int) -> torch.Tensor:
    if w.shape[1] == 1:
        return w.repeat_interleave(c, dim=1)
    mean = w.mean(dim=1, keepdim=True) * (w.shape[1] / c)
    return mean.repeat_interleave(c, dim=1)


def load_pretrained(
    model: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor], strict: bool = False
) -> LoadReport:
    """Load a pretraining checkpoint (``torch.save({"model": backbone.state_dict()})``, or a converted official one)
    into ``model`` (a backbone, a task network, or a bare encoder), matching keys by name.

    Position embeddings trained at another size are interpolated to the model's grid; a first conv trained with
    other input channels is adapted (repeated, or averaged and repeated). Keys present on one side only are
    reported, as are unfixable shape mismatches (skipped).

    Args:
        model: the network to initialise.
        path_or_state_dict: a checkpoint path or dict.
        strict: raise unless every model tensor is loaded and every checkpoint tensor used.

    Returns:
        a :class:`LoadReport` (also printed).

    Raises:
        ValueError: unreadable file, an official training checkpoint (convert it first), or a checkpoint whose layout
            is another variant ("checkpoint looks like variant X, model is Y").
    """
    sd = read_state_dict(path_or_state_dict)
    target = model.state_dict()
    sd = _align_prefix(sd, set(target))
    encoder = next((m for m in model.modules() if isinstance(m, MiTEncoder)), None)
    report = LoadReport(checkpoint_variant=detect_variant(sd))
    if encoder is not None and report.checkpoint_variant is not None:
        model_variant = detect_variant({k: v for k, v in target.items()})
        if model_variant != report.checkpoint_variant:
            raise ValueError(
                f"checkpoint looks like variant {report.checkpoint_variant}, model is {model_variant} "
                f"({encoder.config.name}); build the model with variant={report.checkpoint_variant.split(' ')[0]!r}"
            )
    pos_modules = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, PositionEmbedding)}
    loaded = {}
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
            old = _old_grid(v.shape[1] - m.num_prefix, m.grid)
            if old is None:
                report.mismatched.append(f"{k} {tuple(v.shape)}->{tuple(want.shape)}")
                continue
            loaded[k] = resize_pos_embed(v, old, m.grid, m.num_prefix)
            report.matched.append(k)
            report.resized.append(f"{k} {old}->{m.grid}")
        elif re.search(r"stem\.\dd\.0\.0\.conv\.weight$", k) and v.shape[0] == want.shape[0] and v.shape[2:] == want.shape[2:]:
            loaded[k] = _adapt_in_channels(v, want.shape[1])
            report.matched.append(k)
            report.adapted.append(f"{k} in_channels {v.shape[1]}->{want.shape[1]}")
        else:
            report.mismatched.append(f"{k} {tuple(v.shape)}->{tuple(want.shape)}")
    report.missing = [k for k in target if k not in loaded]
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ValueError(f"strict loading failed:\n{report}")
    model.load_state_dict(loaded, strict=False)
    logger.info("%s", report)
    print(report)
    return report
