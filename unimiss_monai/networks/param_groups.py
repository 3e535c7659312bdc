"""Optimizer parameter groups: no weight decay on biases, norms and embeddings; layer-wise learning-rate decay."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from unimiss_monai.utils.ema import unwrap_model
from unimiss_monai.utils.value_ranges import RANGES, range_problem

__all__ = ["param_groups_lrd", "param_groups_of"]


def _check_decays(weight_decay, layer_decay) -> None:
    """Refuse decays that would train, but badly, in one line each (:data:`~unimiss_monai.utils.value_ranges.RANGES`).
    Checked here too, not only on ``monai.bundle run``'s command line, for ``ConfigWorkflow`` runs and scripts."""
    for name, value, example in (("layer_decay", layer_decay, 0.75), ("weight_decay", weight_decay, 0.05)):
        wording = range_problem(name, value)
        if wording is not None:
            raise ValueError(f"{name} must be {wording}, got {value!r}: {RANGES[name][2]}; pass e.g. --{name} "
                             f"{example}")


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
