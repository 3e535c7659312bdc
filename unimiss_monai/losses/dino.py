"""DINO self-distillation cross-entropy with teacher centring and sharpening.

- [0]: Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO), ICCV 2021,
  https://arxiv.org/abs/2104.14294
- [1]: Xie et al., "UniMiSS: Universal Medical Self-Supervised Learning via Breaking Dimensionality Barrier",
  ECCV 2022; UniMiSS+ (TPAMI 2024). Reference code: github.com/YtongXie/UniMiSS-code
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from unimiss_monai.utils.dist import in_process_group

__all__ = ["CenterUpdate", "DINOLoss", "shared_center_dino", "split_views"]

#: when a loss made of several DINO terms moves the shared centre: after every term (the UniMiSS / UniMiSS+ reference
#: code) or once per step
CenterUpdate = Literal["per_term", "once"]


def split_views(out: Tensor | Sequence[Tensor], n_views: int | None, name: str) -> list[Tensor]:
    """Split view-major logits ``(V*B, K)`` (or a list of ``V`` tensors ``(B, K)``) into ``V`` tensors ``(B, K)``.

    Args:
        out: logits, views stacked along the batch axis in view-major order (view 0 of every sample first).
        n_views: number of views ``V`` when ``out`` is a single tensor; ignored for a list.
        name: argument name used in error messages.
    """
    if isinstance(out, Tensor):
        if out.ndim != 2:
            raise ValueError(f"{name} must have shape (n_views*B, K), got {tuple(out.shape)}.")
        if n_views is None or n_views < 1 or out.shape[0] % n_views != 0:
            raise ValueError(f"{name} has {out.shape[0]} rows, not a multiple of n_views={n_views}.")
        return list(out.chunk(n_views))
    views = list(out)
    if not views:
        raise ValueError(f"{name} is an empty list of views.")
    if any(v.ndim != 2 or v.shape != views[0].shape for v in views):
        raise ValueError(f"all views in {name} must share one shape (B, K), got {[tuple(v.shape) for v in views]}.")
    return views


class DINOLoss(nn.Module):
    """Cross-entropy between the sharpened, centred teacher distribution and the student distribution, averaged over
    all cross-view (student view, teacher view) pairs.

    View pairing: teacher view ``t`` and student view ``s`` are the *same crop* when ``s == t`` (the first
    ``n_teacher_views`` student views are the teacher's crops; any further student views are extra crops). Same-crop
    pairs are skipped when ``skip_same_view=True``. The UniMiSS+ reference code keeps this rule for cross-modality
    terms too (DRR ``i`` and slices of CT view ``i`` are rendered from CT crop ``i``), so it is the default there.

    The teacher temperature is an argument of :meth:`forward`; warm it up with
    :func:`unimiss_monai.utils.teacher_temperature_schedule`. The centre is a buffer updated by :meth:`update_center`
    (all-reduced across ranks only when ``torch.distributed`` is initialised).

    After each forward, :attr:`diagnostics` holds collapse indicators: ``teacher_entropy`` (mean per-sample entropy
    of the teacher distribution, nats; near 0 = sharpening collapse), ``teacher_batch_entropy`` (entropy of the
    batch-mean teacher distribution; near 0 = every sample on one prototype) and ``center_norm``.

    Args:
        out_dim: number of prototypes ``K`` (head output width). Defaults to 65536.
        student_temp: student softmax temperature. Defaults to 0.1.
        center_momentum: EMA momentum of the centre. Defaults to 0.9.
        n_teacher_views: number of teacher views ``V_t`` when the teacher output is one stacked tensor. Defaults to 2.

    Examples::

        >>> loss_fn = DINOLoss(out_dim=8)
        >>> student, teacher = torch.randn(4 * 3, 8), torch.randn(2 * 3, 8)   # 4 student, 2 teacher views, B=3
        >>> loss = loss_fn(student, teacher, teacher_temp=0.04)
    """

    center: Tensor

    def __init__(
        self, out_dim: int = 65536, student_temp: float = 0.1, center_momentum: float = 0.9, n_teacher_views: int = 2
    ) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim must be positive, got {out_dim}.")
        if student_temp <= 0:
            raise ValueError(f"student_temp must be > 0, got {student_temp}.")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}.")
        if n_teacher_views < 1:
            raise ValueError(f"n_teacher_views must be >= 1, got {n_teacher_views}.")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.n_teacher_views = n_teacher_views
        self.register_buffer("center", torch.zeros(1, out_dim))
        self._diagnostics: dict[str, Tensor] = {}

    def _center_on(self, device: torch.device) -> Tensor:
        """The centre buffer, moved (once, for good) to ``device`` when the logits live elsewhere.

        The bundles move their loss to the training device with the network; a loss built elsewhere and left where
        it was made (the CPU) would meet GPU logits on its first call, so the buffer follows them instead of failing
        (state dicts are unaffected).
        """
        if self.center.device != device:
            self.center = self.center.to(device)
        return self.center

    def teacher_probs(self, teacher_out: Tensor, teacher_temp: float) -> Tensor:
        """Centred, sharpened teacher distribution ``softmax((t - center) / teacher_temp)``, detached. ``(N, K)``."""
        if teacher_temp <= 0:
            raise ValueError(f"teacher_temp must be > 0, got {teacher_temp}.")
        center = self._center_on(teacher_out.device)
        return F.softmax((teacher_out.detach().float() - center) / teacher_temp, dim=-1)

    def forward(
        self,
        student_out: Tensor | Sequence[Tensor],
        teacher_out: Tensor | Sequence[Tensor],
        teacher_temp: float,
        skip_same_view: bool = True,
        update_center: bool = True,
    ) -> Tensor:
        """
        Args:
            student_out: student logits ``(V_s*B, K)`` view-major, or a list of ``V_s`` tensors ``(B, K)``.
            teacher_out: teacher logits ``(V_t*B, K)`` with ``V_t = n_teacher_views``, or a list of ``(B, K)``.
                Detached here: no gradient reaches the teacher.
            teacher_temp: teacher softmax temperature (0.04 works well; above 0.07 is often unstable).
            skip_same_view: skip the pairs where student and teacher view indices are equal.
            update_center: update the centre from ``teacher_out`` after computing the loss. Pass ``False`` to
                compute several terms against one teacher and call :meth:`update_center` once yourself.

        Returns:
            scalar loss (float32).
        """
        teacher_views = split_views(teacher_out, self.n_teacher_views, "teacher_out")
        batch = teacher_views[0].shape[0]
        if isinstance(student_out, Tensor):
            if student_out.ndim != 2 or student_out.shape[0] % batch != 0:
                raise ValueError(
                    f"student_out shape {tuple(student_out.shape)} is not (n_student_views*{batch}, K) for the "
                    f"teacher batch size {batch}."
                )
            student_views = split_views(student_out, student_out.shape[0] // batch, "student_out")
        else:
            student_views = split_views(student_out, None, "student_out")
        if student_views[0].shape != teacher_views[0].shape:
            raise ValueError(
                f"student view shape {tuple(student_views[0].shape)} != teacher view shape "
                f"{tuple(teacher_views[0].shape)}."
            )
        if teacher_views[0].shape[1] != self.out_dim:
            raise ValueError(f"logit width {teacher_views[0].shape[1]} != out_dim={self.out_dim}.")

        teacher_all = torch.cat(teacher_views)
        probs = self.teacher_probs(teacher_all, teacher_temp).chunk(len(teacher_views))
        log_student = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_views]

        total = teacher_all.new_zeros((), dtype=torch.float32)
        n_terms = 0
        for t, q in enumerate(probs):
            for s, log_p in enumerate(log_student):
                if skip_same_view and s == t:
                    continue
                total = total + torch.sum(-q * log_p, dim=-1).mean()
                n_terms += 1
        if n_terms == 0:
            raise ValueError(
                f"no cross-view pairs: {len(student_views)} student and {len(teacher_views)} teacher views with "
                "skip_same_view=True; pass more views or skip_same_view=False."
            )
        self._record_diagnostics(torch.cat(probs))
        if update_center:
            self.update_center(teacher_all)
        return total / n_terms

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor | Sequence[Tensor]) -> None:
        """EMA update of the centre with the batch mean of the teacher logits (global mean under DDP).

        Args:
            teacher_out: ``(N, K)`` or a list of ``(B, K)`` teacher logits.
        """
        t = teacher_out if isinstance(teacher_out, Tensor) else torch.cat(list(teacher_out))
        if t.ndim != 2 or t.shape[1] != self.out_dim:
            raise ValueError(f"teacher_out must have shape (N, {self.out_dim}), got {tuple(t.shape)}.")
        batch_sum = t.detach().float().sum(dim=0, keepdim=True)
        count = torch.tensor(float(t.shape[0]), device=t.device)
        if in_process_group():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        batch_center = batch_sum / count
        self._center_on(t.device).mul_(self.center_momentum).add_(batch_center * (1.0 - self.center_momentum))

    @torch.no_grad()
    def _record_diagnostics(self, probs: Tensor) -> None:
        log_probs = probs.clamp_min(1e-12).log()
        mean_probs = probs.mean(dim=0)
        self._diagnostics = {
            "teacher_entropy": -(probs * log_probs).sum(dim=-1).mean(),
            "teacher_batch_entropy": -(mean_probs * mean_probs.clamp_min(1e-12).log()).sum(),
        }

    @property
    def diagnostics(self) -> dict[str, float]:
        """Collapse indicators from the last forward: ``teacher_entropy``, ``teacher_batch_entropy``, ``center_norm``."""
        values = {k: float(v) for k, v in self._diagnostics.items()}
        values["center_norm"] = float(self.center.norm())
        return values


def shared_center_dino(
    out_dim: int, student_temp: float, center_momentum: float, n_views: int, center_update: CenterUpdate
) -> DINOLoss:
    """The one :class:`DINOLoss` (one centre) behind the terms of a composite loss, after checking ``center_update``.

    Args:
        out_dim: prototypes ``K``. student_temp: student temperature. center_momentum: centre EMA momentum.
        n_views: teacher views per sample ``V``.
        center_update: ``"per_term"`` or ``"once"`` (see :data:`CenterUpdate`).
    """
    if center_update not in ("per_term", "once"):
        raise ValueError(f"center_update must be 'per_term' or 'once', got {center_update!r}.")
    return DINOLoss(out_dim, student_temp, center_momentum, n_teacher_views=n_views)
