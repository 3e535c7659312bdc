"""One loss for exclusive classes (softmax cross-entropy) and multi-label findings (sigmoid BCE), with label smoothing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ClassificationLoss"]


class ClassificationLoss(nn.Module):
    """Cross-entropy for exclusive classes or binary cross-entropy for multi-label findings.

    Args:
        multi_label: ``False``: logits (B, C) against class indices (B,) / (B, 1); ``True``: against (B, C) 0/1.
        label_smoothing: epsilon; exclusive targets become ``1 - eps + eps / C`` / ``eps / C``, multi-label targets
            ``1 - eps / 2`` / ``eps / 2``. Defaults to 0.
        pos_weight: multi-label only: C weights of the positive term (e.g. ``negatives / positives`` per finding),
            for findings that are rare in the training set.
        class_weight: exclusive only: C weights of the classes.
    """

    def __init__(
        self, multi_label: bool = False, label_smoothing: float = 0.0, pos_weight: Sequence[float] | None = None,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"ClassificationLoss: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.multi_label, self.label_smoothing = multi_label, float(label_smoothing)
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32))
        self.register_buffer("class_weight", None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, C); target (B,)/(B, 1) indices or (B, C) 0/1 -> scalar loss."""
        if self.multi_label:
            if target.shape != logits.shape:
                raise ValueError(f"ClassificationLoss: multi-label target shape {tuple(target.shape)} must equal logits {tuple(logits.shape)}")
            target = target.to(logits.dtype) * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
            pos_weight = self._like(self.pos_weight, logits)
            return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
        target = target.reshape(target.shape[0], -1)
        if target.shape[1] == logits.shape[1] and logits.shape[1] > 1:
            target = target.argmax(1)  # one-hot
        elif target.shape[1] == 1:
            target = target[:, 0]
        else:
            raise ValueError(f"ClassificationLoss: target shape {tuple(target.shape)} fits neither indices (B,) nor one-hot {tuple(logits.shape)}")
        return nn.functional.cross_entropy(
            logits, target.long(), weight=self._like(self.class_weight, logits), label_smoothing=self.label_smoothing
        )

    @staticmethod
    def _like(weight: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
        # the weights follow the logits' device and dtype; under autocast the loss itself runs in float32, so they stay
        # float32 there (rounding them to the float16 of the logits first would lose precision for nothing)
        if weight is None:
            return None
        kind = logits.device.type
        autocast = torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind)
        return weight.to(device=logits.device, dtype=torch.float32 if autocast else logits.dtype)
