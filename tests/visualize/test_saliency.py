"""Grad-CAM: analytic cases on hand-made models (feature maps and tokens), then the UniMiSS classifier in 2D/3D."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unimiss_monai.visualize import grad_cam, saliency_png


class _MapNet(nn.Module):
    """Features (x, -x); class 0 scores mean(x), class 1 scores mean(-x): Grad-CAM of class c is relu(+-x) / max."""

    def __init__(self):
        super().__init__()
        self.target = nn.Identity()

    def forward(self, x):
        feats = self.target(torch.cat([x, -x], dim=1))
        return feats.flatten(2).mean(-1)


class _TokenNet(nn.Module):
    """Tokens: a CLS token then the means of 2 x 2 patches; class 0 scores the mean patch token."""

    def __init__(self):
        super().__init__()
        self.target = nn.Identity()

    def forward(self, x):
        patches = nn.functional.avg_pool2d(x, 2).flatten(2).transpose(1, 2)  # (B, N, 1)
        tokens = self.target(torch.cat([torch.zeros_like(patches[:, :1]), patches], dim=1))
        return tokens[:, 1:].mean(1).repeat(1, 2)


def test_feature_map_cam_is_analytic():
    x = torch.randn(2, 1, 8, 8)
    net = _MapNet()
    for c, sign in ((0, 1.0), (1, -1.0)):
        cam = grad_cam(net, x, class_index=c, target_layer=net.target)
        expected = torch.relu(sign * x[:, 0])
        expected = expected / expected.flatten(1).amax(1).view(-1, 1, 1)
        torch.testing.assert_close(cam, expected)


def test_token_cam_locates_the_bright_patch():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4:6, 2:4] = 1.0  # patch (row 2, col 1) of the 4 x 4 grid
    net = _TokenNet()
    cam = grad_cam(net, x, class_index=0, target_layer=net.target, grid=(4, 4))
    assert cam.shape == (1, 8, 8)
    peak = divmod(int(cam[0].argmax()), 8)
    assert 4 <= peak[0] <= 5 and 2 <= peak[1] <= 3
    assert cam[0, 0, 7] == 0.0  # far from the patch: no evidence
    with pytest.raises(ValueError, match="patch grid"):
        grad_cam(net, x, class_index=0, target_layer=net.target, grid=(3, 3))


@pytest.mark.parametrize("spatial_dims, size", [(2, (64, 64)), (3, (16, 32, 32))])
def test_unimiss_classifier_cam(spatial_dims, size, tmp_path):
    from unimiss_monai.networks import UniMissClassifier, tiny_overrides

    net = UniMissClassifier(spatial_dims, 1, 3, img_size=size, **tiny_overrides("mitplus"))
    net.train()
    x = torch.randn(2, 1, *size)
    cam = grad_cam(net, x)
    assert cam.shape == (2, *size) and torch.isfinite(cam).all()
    assert cam.min() >= 0 and cam.max() <= 1
    assert net.training and all(p.grad is None for p in net.parameters())
    path = saliency_png(x[0, 0], cam[0], tmp_path / "cam.png", title="test")
    assert open(path, "rb").read(4) == b"\x89PNG"
    with pytest.raises(ValueError, match="same 2D or 3D shape"):
        saliency_png(x[0, 0], cam[0, :4], tmp_path / "bad.png")


def test_writer_rejects_an_unknown_saliency_method(tmp_path):
    from unimiss_monai.handlers import ClassProbabilityWriter

    with pytest.raises(ValueError, match="saliency_method must be one of"):
        ClassProbabilityWriter(tmp_path, ["a", "b"], saliency=True, network=nn.Identity(), saliency_method="cam")
