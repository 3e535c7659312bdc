"""UniMiSS (ECCV 2022) cross-dimension self-distillation: volumes and their axial slices teach each other."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unimiss_monai.losses.dino import CenterUpdate, shared_center_dino

__all__ = ["CrossDimensionDINOLoss", "average_slice_logits"]


def average_slice_logits(slice_out: Tensor, name: str = "slice logits") -> Tensor:
    """Average per-slice logits ``(N, S, K)`` into one logit vector per volume ``(N, K)``; ``(N, K)`` passes through.

    ``N`` is view-major (``V*B``) like the volume logits, so row ``i`` is the slice mean of volume row ``i``.
    """
    if slice_out.ndim == 3:
        return slice_out.mean(dim=1)
    if slice_out.ndim == 2:
        return slice_out
    raise ValueError(f"{name} must be (N, S, K) or (N, K), got {tuple(slice_out.shape)}.")


class CrossDimensionDINOLoss(nn.Module):
    """Sum of four DINO terms between 3D volume logits and the per-volume mean of their 2D axial-slice logits.

    Following the reference training code (``UniMiSS/main.py``): every axial slice of each global CT view goes through
    the 2D branch of both student and teacher, slice logits are averaged per volume, and

    ``total = DINO(vol_s, vol_t) + DINO(slc_s, vol_t) + DINO(slc_s, slc_t) + DINO(vol_s, slc_t)``

    with one shared centre. The reference code updates the centre after *each* term from that term's teacher output
    (``center_update="per_term"``, the default); ``"once"`` applies a single update per step from the volume and slice
    teacher logits together.

    Args:
        out_dim: prototypes ``K``. Defaults to 65536.
        student_temp: student temperature. Defaults to 0.1.
        center_momentum: centre EMA momentum. Defaults to 0.9.
        n_views: global views per sample ``V``. Defaults to 2.
        center_update: ``"per_term"`` or ``"once"``. Defaults to ``"per_term"``.
    """

    def __init__(
        self,
        out_dim: int = 65536,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        n_views: int = 2,
        center_update: CenterUpdate = "per_term",
    ) -> None:
        super().__init__()
        self.dino = shared_center_dino(out_dim, student_temp, center_momentum, n_views, center_update)
        self.center_update = center_update

    def forward(
        self,
        student_volume: Tensor,
        teacher_volume: Tensor,
        student_slices: Tensor,
        teacher_slices: Tensor,
        teacher_temp: float,
    ) -> dict[str, Tensor]:
        """
        Args:
            student_volume: student logits of the CT views ``(V*B, K)``, view-major.
            teacher_volume: teacher logits of the CT views ``(V*B, K)``.
            student_slices: student logits of their axial slices ``(V*B, S, K)`` (or already averaged ``(V*B, K)``).
            teacher_slices: teacher logits of the slices, same layout.
            teacher_temp: teacher temperature.

        Returns:
            ``{"volume", "slices_to_volume", "slices", "volume_to_slices", "total"}`` scalar tensors.
        """
        s_slc = average_slice_logits(student_slices, "student_slices")
        t_slc = average_slice_logits(teacher_slices, "teacher_slices")
        for name, x in (("student_slices", s_slc), ("teacher_slices", t_slc), ("student_volume", student_volume)):
            if x.shape != teacher_volume.shape:
                raise ValueError(f"{name} gives {tuple(x.shape)}, expected {tuple(teacher_volume.shape)} (V*B, K).")
        per_term = self.center_update == "per_term"
        terms = {
            "volume": self.dino(student_volume, teacher_volume, teacher_temp, update_center=per_term),
            "slices_to_volume": self.dino(s_slc, teacher_volume, teacher_temp, update_center=per_term),
            "slices": self.dino(s_slc, t_slc, teacher_temp, update_center=per_term),
            "volume_to_slices": self.dino(student_volume, t_slc, teacher_temp, update_center=per_term),
        }
        if not per_term:
            self.dino.update_center(torch.cat([teacher_volume, t_slc]))
        terms["total"] = sum(terms.values(), torch.zeros((), device=teacher_volume.device))
        return terms
