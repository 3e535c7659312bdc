"""Mirror test-time augmentation equals the flip-average written out by hand, and leaves the inner inferer alone
without axes."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer
from torch import nn

from unimiss_monai.inferers import MirrorTTAInferer


def _toy_net(spatial_dims: int) -> nn.Module:
    # not mirror-equivariant (a 3-wide kernel with random weights), so each flip changes the prediction
    torch.manual_seed(0)
    conv = (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(1, 2, 3, padding=1)
    return nn.Sequential(conv, nn.Softmax(1)).eval()


@pytest.mark.parametrize("spatial_dims,axes", [(2, [0]), (2, [0, 1]), (3, [2]), (3, [0, 1, 2])])
def test_equals_manual_flip_average(spatial_dims, axes):
    net = _toy_net(spatial_dims)
    x = torch.rand(2, 1, *([8] * spatial_dims))
    with torch.no_grad():
        expected = net(x)
        for a in axes:
            expected = expected + torch.flip(net(torch.flip(x, [2 + a])), [2 + a])
        expected = expected / (1 + len(axes))
        got = MirrorTTAInferer(SimpleInferer(), axes)(x, net)
        plain = net(x)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain)  # the flips did change something: the test can tell them apart


def test_no_axes_is_the_inner_inferer():
    net = _toy_net(3)
    x = torch.rand(1, 1, 8, 12, 12)
    inner = SlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=2, overlap=0.5)
    with torch.no_grad():
        torch.testing.assert_close(MirrorTTAInferer(inner)(x, net), inner(x, net))


def test_bad_axes_are_refused():
    with pytest.raises(ValueError, match="distinct non-negative"):
        MirrorTTAInferer(SimpleInferer(), [1, 1])
    with pytest.raises(ValueError, match="do not exist"):
        MirrorTTAInferer(SimpleInferer(), [2])(torch.zeros(1, 1, 4, 4), nn.Identity())
