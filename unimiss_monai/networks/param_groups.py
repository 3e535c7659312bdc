"""Optimizer parameter groups: no weight decay on biases, norms and embeddings; layer-wise learning-rate decay."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from torch import nn

from unimiss_monai.utils.ema import unwrap_model

__all__ = ["param_groups_lrd", "param_groups_of"]


def _number(value) -> float | None:
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


def _check_decays(weight_decay, layer_decay) -> None:
    """Refuse decays that would train, but badly, in one line each: a layer decay above 1 gives the early layers
    larger rates than the head (0 freezes all but the head), and a negative weight decay grows the weights. Checked
    here too, not only on ``monai.bundle run``'s command line, for ``ConfigWorkflow`` runs and scripts."""
    layer = _number(layer_decay)
    if layer is None or not 0 < layer <= 1:
        raise ValueError(f"layer_decay must be a number in (0, 1] (1: every layer at the head's rate), got "
                         f"{layer_decay!r}: above 1 the early layers outpace the head, and 0 freezes all but the head; "
                         "pass e.g. --layer_decay 0.75")
    decay = _number(weight_decay)
    if decay is None or not 0 <= decay < math.inf:
        raise ValueError(f"weight_decay must be a finite number of at least 0, got {weight_decay!r}: a negative "
                         "decay grows the weights; pass e.g. --weight_decay 0.05")


def param_groups_lrd(
    model: nn.Module, base_lr: float, weight_decay: float = 0.05, layer_decay: float = 1.0
) -> list[dict]:
    """Parameter groups for ``torch.optim.AdamW`` with layer-wise LR decay (BEiT / MAE style).

    Group ``g`` of ``model.layer_groups()`` (input to output, ``G`` groups) gets ``lr = base_lr * layer_decay **
    (G - 1 - g)``; biases, 1-D parameters (norms) and ``model.no_weight_decay()`` names get no weight decay.
    Frozen parameters are left out. Each group also carries ``lr_scale`` for schedulers that rescale.

    Args:
        model: a network with ``layer_groups()`` (e.g. ``UniMissSegmentation``); without it, one group. A
            ``DistributedDataParallel`` / ``DataParallel`` wrapper is looked through (it shares the parameters).
        base_lr: learning rate of the last (head) group.
        weight_decay: decay of the decayed parameters.
        layer_decay: per-group LR factor in (0, 1] (1.0 disables the decay).

    Raises:
        ValueError: ``layer_decay`` outside (0, 1], or ``weight_decay`` below 0 or not finite.
    """
    _check_decays(weight_decay, layer_decay)
    # the wrappers hide layer_groups() / no_weight_decay() and prefix every name with "module."
    model = unwrap_model(model)
    names_by_group = model.layer_groups() if hasattr(model, "layer_groups") else [[n for n, _ in model.named_parameters()]]
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    params = dict(model.named_parameters())
    num = len(names_by_group)
    groups: dict[tuple[int, bool], dict] = {}
    for g, names in enumerate(names_by_group):
        scale = layer_decay ** (num - 1 - g)
        for n in names:
            p = params[n]
            if not p.requires_grad:
                continue
            decay = not (p.ndim <= 1 or n.endswith(".bias") or n in skip)
            group = groups.setdefault(
                (g, decay),
                {"params": [], "lr": base_lr * scale, "lr_scale": scale, "weight_decay": weight_decay if decay else 0.0},
            )
            group["params"].append(p)
    return list(groups.values())


def param_groups_of(models: Sequence[nn.Module], base_lr: float, weight_decay: float = 0.05) -> list[dict]:
    """:func:`param_groups_lrd` of each of ``models`` (e.g. a network and its separate heads), in one list."""
    return [group for model in models for group in param_groups_lrd(model, base_lr, weight_decay)]
