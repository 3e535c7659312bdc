"""Mirror test-time augmentation: average a prediction over flips of the input (nnU-Net style)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.inferers import Inferer

__all__ = ["MirrorTTAInferer"]


class MirrorTTAInferer(Inferer):
    """Run ``inferer`` on the input and on its mirror image along each of ``spatial_axes``, flip each prediction
    back, and return the mean: ``(f(x) + sum_a flip_a(f(flip_a(x)))) / (1 + len(spatial_axes))``.

    One flip per listed axis (not every combination), so the cost is ``1 + len(spatial_axes)`` passes. With no axes it
    is ``inferer`` itself. Flipping is only a fair augmentation along axes where the anatomy is (nearly) mirror
    symmetric, or where the network was trained with flips along them.

    Args:
        inferer: the inner inferer, called as ``inferer(inputs, network, *args, **kwargs)`` (e.g. a
            ``SlidingWindowInferer``).
        spatial_axes: spatial axes to mirror (0 is the first axis after the channel). Defaults to none.

    Examples::

        sw = SlidingWindowInferer(roi_size=(32, 128, 128))
        pred = MirrorTTAInferer(sw, spatial_axes=[2])(image, network)  # (B, C, *spatial)
    """

    def __init__(self, inferer: Callable[..., torch.Tensor], spatial_axes: Sequence[int] = ()) -> None:
        super().__init__()
        axes = [int(a) for a in spatial_axes]
        if any(a < 0 for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"MirrorTTAInferer: spatial_axes must be distinct non-negative axes, got {list(spatial_axes)}")
        self.inferer, self.spatial_axes = inferer, axes

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        """inputs: (B, C_in, *spatial) -> the inner inferer's (B, C_out, *spatial), averaged over the flips."""
        if any(a >= inputs.ndim - 2 for a in self.spatial_axes):
            raise ValueError(f"MirrorTTAInferer: spatial_axes {self.spatial_axes} do not exist in an input with "
                             f"{inputs.ndim - 2} spatial dims")
        total = self.inferer(inputs, network, *args, **kwargs)
        for axis in self.spatial_axes:
            dims = [2 + axis]
            total = total + torch.flip(self.inferer(torch.flip(inputs, dims), network, *args, **kwargs), dims)
        return total / (1 + len(self.spatial_axes))
