"""Exponential moving average of student weights into a teacher (mean teacher / DINO / UniMiSS)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["unwrap_model", "update_momentum"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the wrapped module of ``DistributedDataParallel`` / ``DataParallel`` (or ``model`` itself)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


@torch.no_grad()
def update_momentum(student: nn.Module, teacher: nn.Module, m: float) -> None:
    """In place ``teacher = m * teacher + (1 - m) * student`` for every parameter, matched by name.

    Args:
        student: source network (may be wrapped in DDP / DataParallel).
        teacher: EMA network with the same parameter names (may be wrapped too).
        m: momentum in ``[0, 1]``; 1 keeps the teacher, 0 copies the student.

    Raises:
        ValueError: if ``m`` is outside ``[0, 1]`` or the parameter names or shapes differ.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum m must be in [0, 1], got {m}.")
    s_params = dict(unwrap_model(student).named_parameters())
    t_params = dict(unwrap_model(teacher).named_parameters())
    if s_params.keys() != t_params.keys():
        only_s = sorted(s_params.keys() - t_params.keys())[:3]
        only_t = sorted(t_params.keys() - s_params.keys())[:3]
        raise ValueError(
            f"student and teacher parameters differ: only in student {only_s}, only in teacher {only_t}; "
            "build the teacher as a copy of the student architecture."
        )
    names = list(t_params)
    for n in names:
        if s_params[n].shape != t_params[n].shape:
            raise ValueError(f"parameter {n!r}: student {tuple(s_params[n].shape)} != teacher {tuple(t_params[n].shape)}.")
    teacher_list = [t_params[n] for n in names]
    student_list = [s_params[n].detach().to(t_params[n].dtype) for n in names]
    # one fused kernel per device/dtype group instead of one per tensor
    torch._foreach_lerp_(teacher_list, student_list, 1.0 - m)
