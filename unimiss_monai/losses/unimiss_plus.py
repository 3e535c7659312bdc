"""UniMiSS+ (TPAMI 2024) objective: CT self-distillation, CT teaching DRRs and slices, and image reconstruction."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from unimiss_monai.losses.cross_dimension import average_slice_logits
from unimiss_monai.losses.dino import CenterUpdate, shared_center_dino
from unimiss_monai.losses.reconstruction import ReconstructionMSELoss

__all__ = ["UniMissPlusLoss"]


class UniMissPlusLoss(nn.Module):
    """Weighted UniMiSS+ objective over a dict of network outputs.

    Mirrors the reference ``train_one_epoch3D`` of ``UniMiSSPlus/main_UniMissPlus.py``::

        total = distill                                  DINO(student CT views, teacher CT views)
              + weight_drr * drr_distill                 DINO(student DRR views, teacher CT views)
              + weight_slices * slices_distill           DINO(student slice mean per CT view, teacher CT views)
              + weight_reconstruction * reconstruction   MSE(sigmoid(decoder(CT)), min-max rescaled CT)
              + weight_reconstruction * reconstruction_drr   MSE(sigmoid(decoder(DRR)), DRR)

    The reference run uses ``weight_drr=0.5, weight_slices=0.1, weight_reconstruction=5`` (``run_UniMissPlus.sh``;
    the script's own argparse defaults are 1.0). Every DINO term skips equal view indices, including the
    cross-modality ones: DRR ``i`` and slices ``i`` come from CT crop ``i``. Slices are every second axial slice of
    each CT view; the caller passes the student slice logits ``(V*B, S, K)`` and they are averaged here.

    The same module serves the reference 2D steps (X-ray only): pass ``student``/``teacher`` X-ray logits and
    ``reconstruction``/``image`` X-ray tensors and leave out the DRR and slice keys; 2D targets are not rescaled.

    Centre: the reference code updates it after every DINO term from the teacher (CT) logits, i.e. up to three
    updates per step (``center_update="per_term"``, the default); ``"once"`` makes one update per step.

    Args:
        out_dim: prototypes ``K``. Defaults to 65536.
        student_temp: student temperature. Defaults to 0.1.
        center_momentum: centre EMA momentum. Defaults to 0.9.
        n_views: global views per sample ``V``. Defaults to 2.
        weight_drr: weight of the DRR-to-CT term. Defaults to 0.5.
        weight_slices: weight of the slices-to-CT term. Defaults to 0.1.
        weight_reconstruction: weight of each reconstruction term. Defaults to 5.0.
        center_update: ``"per_term"`` or ``"once"``. Defaults to ``"per_term"``.
    """

    optional_pairs = {"reconstruction": "image", "reconstruction_drr": "image_drr"}

    def __init__(
        self,
        out_dim: int = 65536,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        n_views: int = 2,
        weight_drr: float = 0.5,
        weight_slices: float = 0.1,
        weight_reconstruction: float = 5.0,
        center_update: CenterUpdate = "per_term",
    ) -> None:
        super().__init__()
        self.dino = shared_center_dino(out_dim, student_temp, center_momentum, n_views, center_update)
        self.volume_reconstruction = ReconstructionMSELoss(apply_sigmoid=True, normalize_target=True)
        self.image_reconstruction = ReconstructionMSELoss(apply_sigmoid=True, normalize_target=False)
        self.weights = {
            "distill": 1.0,
            "drr_distill": weight_drr,
            "slices_distill": weight_slices,
            "reconstruction": weight_reconstruction,
            "reconstruction_drr": weight_reconstruction,
        }
        self.center_update = center_update

    def _reconstruction(self, pred: Tensor, target: Tensor) -> Tensor:
        # CT volumes (B, C, D, H, W) are in HU/1024 units: rescale to the sigmoid range; 2D images already are.
        loss = self.volume_reconstruction if target.ndim == 5 else self.image_reconstruction
        return loss(pred, target)

    def forward(self, outputs: Mapping[str, Tensor], teacher_temp: float) -> dict[str, Tensor]:
        """
        Args:
            outputs: ``student`` ``(V*B, K)`` and ``teacher`` ``(V*B, K)`` (required; CT in 3D steps); optional
                ``student_drr`` ``(V*B, K)``, ``student_slices`` ``(V*B, S, K)`` or ``(V*B, K)``,
                ``reconstruction`` with ``image`` (``(V*B, C, *spatial)``), ``reconstruction_drr`` with ``image_drr``.
            teacher_temp: teacher temperature.

        Returns:
            the named terms present (unweighted) plus ``total`` (weighted sum).
        """
        for key in ("student", "teacher"):
            if key not in outputs:
                raise ValueError(f"UniMissPlusLoss outputs lack the required key {key!r} (have {sorted(outputs)}).")
        for pred_key, target_key in self.optional_pairs.items():
            if (pred_key in outputs) != (target_key in outputs):
                raise ValueError(f"outputs must hold both {pred_key!r} and {target_key!r} or neither.")
        teacher = outputs["teacher"]
        per_term = self.center_update == "per_term"
        students = {"distill": outputs["student"]}
        if "student_drr" in outputs:
            students["drr_distill"] = outputs["student_drr"]
        if "student_slices" in outputs:
            students["slices_distill"] = average_slice_logits(outputs["student_slices"], "student_slices")
        terms: dict[str, Tensor] = {}
        for name, student in students.items():
            # DINOLoss checks the view layout: student (V_s*B, K) against teacher (V*B, K)
            terms[name] = self.dino(student, teacher, teacher_temp, update_center=per_term)
        if not per_term:
            self.dino.update_center(teacher)
        if "reconstruction" in outputs:
            terms["reconstruction"] = self._reconstruction(outputs["reconstruction"], outputs["image"])
        if "reconstruction_drr" in outputs:
            terms["reconstruction_drr"] = self._reconstruction(outputs["reconstruction_drr"], outputs["image_drr"])
        total = torch.zeros((), device=teacher.device)
        for name, value in terms.items():
            total = total + self.weights[name] * value
        terms["total"] = total
        return terms
