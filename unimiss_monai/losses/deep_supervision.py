"""Deep-supervision loss for networks that stack their levels into one tensor (``UniMissSegmentation``)."""

from __future__ import annotations

from collections.abc import Sequence

from monai.losses import DeepSupervisionLoss
from torch import Tensor, nn
from torch.nn.modules.loss import _Loss

__all__ = ["StackedDeepSupervisionLoss"]


class StackedDeepSupervisionLoss(nn.Module):
    """MONAI ``DeepSupervisionLoss`` that also takes the levels stacked along ``dim`` of one tensor.

    ``UniMissSegmentation(..., deep_supervision=True)`` returns ``(B, 1 + K, C, *spatial)`` in training mode and plain
    ``(B, C, *spatial)`` logits in eval mode; a trainer hands either to its loss unchanged. Stacked levels are unbound
    into the list ``DeepSupervisionLoss`` expects (main output first, weighted ``1, 0.5, 0.25, ...`` for ``"exp"``);
    plain logits (as many dimensions as the target) get the wrapped loss alone.

    Args:
        loss: per-level loss, e.g. ``monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)``.
        weight_mode: ``"same"``, ``"exp"`` or ``"two"``, see ``monai.losses.DeepSupervisionLoss``. Defaults to ``"exp"``.
        weights: explicit per-level weights (main output first); used instead of ``weight_mode`` when given for
            at least as many levels as the input has.
        dim: the level dimension of a stacked input. Defaults to 1.

    Examples::

        >>> loss = StackedDeepSupervisionLoss(monai.losses.DiceCELoss(to_onehot_y=True, softmax=True))
        >>> loss(torch.randn(2, 3, 4, 8, 8, 8), torch.randint(0, 4, (2, 1, 8, 8, 8)))  # 1 main + 2 deep levels
    """

    def __init__(
        self, loss: _Loss | nn.Module, weight_mode: str = "exp", weights: Sequence[float] | None = None, dim: int = 1
    ) -> None:
        super().__init__()
        self.deep_supervision = DeepSupervisionLoss(loss, weight_mode=weight_mode, weights=None if weights is None else list(weights))
        self.dim = dim

    def forward(self, input: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
        """
        Args:
            input: levels stacked as ``(B, 1 + K, C, *spatial)``, a list of ``(B, C, *spatial_l)`` (main output
                first; targets are resized to coarser levels), or plain logits ``(B, C, *spatial)``.
            target: ``(B, 1, *spatial)`` labels or ``(B, C, *spatial)`` one-hot, as the wrapped loss takes them.

        Returns:
            the weighted sum of the per-level losses (a scalar for a reducing loss).
        """
        if isinstance(input, Tensor):
            if input.ndim == target.ndim + 1:
                input = list(input.unbind(self.dim))
            elif input.ndim != target.ndim:
                raise ValueError(
                    f"StackedDeepSupervisionLoss: input of shape {tuple(input.shape)} fits neither target "
                    f"{tuple(target.shape)} nor stacked levels (one more dimension, levels along dim {self.dim})."
                )
        elif len(input) == 0:
            raise ValueError("StackedDeepSupervisionLoss: got an empty list of levels; pass at least the main output.")
        else:
            input = list(input)
        return self.deep_supervision(input, target)
