"""Which files ``--pretrained_path`` takes: a pretraining run's resume checkpoint (student and teacher, as
``TrainingCheckpoint`` saves them) is refused with the file to pass instead; the run's export loads."""

from __future__ import annotations

import pytest
import torch

from unimiss_monai.networks import DINOHead, StudentTeacher, build_backbone, load_pretrained


def test_resume_checkpoint_is_refused_and_the_export_loads(tmp_path):
    backbone = build_backbone("mitplus", (2, 3), preset="smoke")
    net = StudentTeacher(backbone, DINOHead(backbone.embed_dim, 16))
    resume = tmp_path / "checkpoint.pt"
    torch.save({"network": net.state_dict(), "optimizer": {}, "epoch": 1}, resume)
    target = build_backbone("mitplus", (2, 3), preset="smoke")
    with pytest.raises(ValueError, match="resume checkpoint .* <output_dir>/models/model.pt"):
        load_pretrained(target, resume)
    export = tmp_path / "model.pt"
    torch.save(net.export(), export)
    load_pretrained(target, export)
    teacher = net.teacher.backbone.state_dict()
    assert all(torch.equal(v, teacher[k]) for k, v in target.state_dict().items())
