"""Student/teacher pair for self-distillation: backbone + DINO head, with DINO-style multi-crop batching.

References:
    - [0]: DINO, Caron et al., 2021, https://arxiv.org/abs/2104.14294 (``MultiCropWrapper``)
    - [1]: UniMiSS+, Xie et al., TPAMI 2024, github.com/YtongXie/UniMiSS-code ``UniMiSSPlus/`` (wrapper returning the
      decoder reconstruction beside the head logits)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["MultiCropOutput", "MultiCropWrapper", "StudentTeacher", "TeacherLogits", "split_backbone_output"]


class MultiCropOutput(NamedTuple):
    """Result of :class:`MultiCropWrapper` on a list of crops.

    Attributes:
        logits: head output of all crops, concatenated in input order, ``(sum_i B_i, out_dim)``.
        reconstructions: one decoder output per input crop (``(B_i, C, *spatial_i)``), or ``None`` per crop when the
            backbone has no reconstruction head.
        embeddings: backbone embeddings (head input), concatenated like ``logits``, ``(sum_i B_i, embed_dim)``.
    """

    logits: torch.Tensor
    reconstructions: list[torch.Tensor | None]
    embeddings: torch.Tensor


def split_backbone_output(output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(embedding, reconstruction or None)`` from a backbone's output.

    A backbone may return the embedding alone (``(B, D)``, e.g. ``MiT``), a pair of the embedding and a reconstruction
    in either order (``MiTPlus`` returns ``(reconstruction, cls)``; the 2-D tensor is the embedding), or a mapping with
    ``"embedding"`` and optionally ``"reconstruction"``.
    """
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, dict):
        if "embedding" not in output:
            raise KeyError(f"backbone returned a dict with keys {sorted(output)}; it needs 'embedding' (and optionally 'reconstruction')")
        return output["embedding"], output.get("reconstruction")
    if isinstance(output, (tuple, list)) and len(output) == 2:
        first, second = output
        return (first, second) if first.ndim == 2 else (second, first)
    raise TypeError(f"backbone output of type {type(output).__name__} is not a tensor, an (embedding, reconstruction) pair or a dict")


class MultiCropWrapper(nn.Module):
    """Runs a backbone once per run of consecutive same-shaped crops, then the head once on all embeddings.

    Crops of one resolution (e.g. the two 16x96x96 CT global crops, or two DRR views and the axial slices) share one
    backbone pass, which is what makes multi-crop training affordable. The backbone decides 2D vs 3D from the input
    rank, so 2D and 3D crops may be mixed in one call (one pass each).

    Args:
        backbone: maps ``(B, C, *spatial)`` to an embedding ``(B, D)``, optionally with a reconstruction
            (see :func:`split_backbone_output`).
        head: maps ``(N, D)`` embeddings to logits ``(N, out_dim)``, e.g. ``unimiss_monai.networks.DINOHead``.

    Examples::

        >>> out = MultiCropWrapper(backbone, head)([ct_view_0, ct_view_1])  # one 3D pass for both views
        >>> out.logits.shape  # (2 * B, out_dim)
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def no_weight_decay(self) -> set[str]:
        """The backbone's no-weight-decay names (position embeddings, ...), prefixed for this module."""
        names = self.backbone.no_weight_decay() if hasattr(self.backbone, "no_weight_decay") else set()
        return {f"backbone.{n}" for n in names}

    def forward(self, crops: torch.Tensor | Sequence[torch.Tensor]) -> MultiCropOutput:
        if isinstance(crops, torch.Tensor):
            crops = [crops]
        if len(crops) == 0:
            raise ValueError("MultiCropWrapper needs at least one crop")
        embeddings: list[torch.Tensor] = []
        reconstructions: list[torch.Tensor | None] = []
        start = 0
        while start < len(crops):
            end = start + 1
            while end < len(crops) and crops[end].shape[1:] == crops[start].shape[1:]:
                end += 1
            sizes = [c.shape[0] for c in crops[start:end]]
            emb, rec = split_backbone_output(self.backbone(torch.cat(list(crops[start:end]))))
            embeddings.append(emb)
            reconstructions.extend(rec.split(sizes) if rec is not None else [None] * len(sizes))
            start = end
        all_embeddings = torch.cat(embeddings)
        return MultiCropOutput(self.head(all_embeddings), reconstructions, all_embeddings)


class StudentTeacher(nn.Module):
    """A student :class:`MultiCropWrapper` and its exponential-moving-average teacher.

    The teacher starts as an exact copy of the student and never receives gradients: its parameters have
    ``requires_grad=False`` and it only follows the student by EMA (``unimiss_monai.utils.update_momentum``). Only ``student`` goes into the optimizer
    (and into DDP); the teacher backbone is what pretraining exports.

    Args:
        backbone: student backbone (see :class:`MultiCropWrapper`).
        head: student projection head.
        teacher_backbone: optional separate teacher backbone; by default a deep copy of ``backbone``. Give one when the
            teacher should differ in non-parameter settings (e.g. no stochastic depth); its state is overwritten by the
            student's so both start equal.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, teacher_backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.student = MultiCropWrapper(backbone, head)
        teacher_bb = copy.deepcopy(backbone) if teacher_backbone is None else teacher_backbone
        self.teacher = MultiCropWrapper(teacher_bb, copy.deepcopy(head))
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        #: spatial dimensions the pair has been trained on, set by the pretraining trainer (``None``: not recorded);
        #: the export records them, so that fine-tuning can tell a 3D branch that never saw a CT
        self.trained_dims: list[int] | None = None

    def train(self, mode: bool = True) -> StudentTeacher:
        # the teacher keeps eval-mode semantics for dropout / drop-path, as in DINO where it is never trained directly;
        # its batch norms (a head with use_bn) normalise with the batch's statistics in training, as DINO's teacher,
        # which runs in training mode: their running buffers are not EMA-updated from the student (EMA updates
        # parameters only) but update on every teacher forward in training, as in DINO
        super().train(mode)
        self.teacher.eval()
        for m in self.teacher.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(mode)
        return self

    def teacher_backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher backbone's weights as plain CPU tensors (what ``models/model.pt`` holds under ``model``)."""
        return {k: v.detach().cpu().clone() for k, v in self.teacher.backbone.state_dict().items()}

    def export(self) -> dict:
        """``{"model": teacher backbone state dict, "info": backbone_info(teacher backbone)}``: the pretraining
        export, which records variant, widths and training sizes so fine-tuning can resize and check the weights, and
        ``trained_dims`` when the trainer recorded them."""
        from unimiss_monai.networks.pretrained import backbone_info

        info = backbone_info(self.teacher.backbone)
        if self.trained_dims is not None:
            info["trained_dims"] = [int(d) for d in self.trained_dims]
        return {"model": self.teacher_backbone_state_dict(), "info": info}


class TeacherLogits(nn.Module):
    """The teacher's head logits ``(B, out_dim)`` for a ``(B, C, *spatial)`` input: what a pretraining bundle's
    ``network_data_format`` describes, since its ``StudentTeacher`` has no forward of its own."""

    def __init__(self, student_teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = student_teacher.teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x).logits
