"""``DRR``: a thin ``nn.Module`` holding a prepared CT and the detector geometry around :func:`render`."""

from __future__ import annotations

import torch

from unimiss_monai.drr.geometry import ConeBeam
from unimiss_monai.drr.render import as_poses, project
from unimiss_monai.drr.attenuation import beer_lambert
from unimiss_monai.drr.volume import prepare_volume

__all__ = ["DRR"]


class DRR(torch.nn.Module):
    """Renders views of one CT with fixed intrinsics; change them with :meth:`set_geometry` (explicit, no magic).

    Example::

        drr = DRR(hu, affine, detector_shape=(256, 256), pixel_spacing=1.5625)
        images = drr(["AP", {"view": "AP", "rotation": (0, 0, 15)}])  # (2, 256, 256)
    """

    def __init__(self, volume, affine=None, method: str = "siddon", output: str = "line_integral", i0: float = 1.0,
                 isocenter=None, volume_unit: str = "hu", affine_space: str | None = None, device=None, **geometry):
        super().__init__()
        self.volume = prepare_volume(volume, affine, volume_unit=volume_unit, affine_space=affine_space, device=device)
        self.geometry = ConeBeam(**geometry)
        self.method, self.output, self.i0, self.isocenter = method, output, i0, isocenter

    def set_geometry(self, **changes) -> None:
        """Replace detector intrinsics (``detector_shape``, ``pixel_spacing``, ``sdd``, ``sid``, ``principal_point``)."""
        current = {k: getattr(self.geometry, k) for k in ("detector_shape", "pixel_spacing", "sdd", "sid", "principal_point")}
        self.geometry = ConeBeam(**{**current, **changes})

    def forward(self, views=("AP",)) -> torch.Tensor:
        """``(V, H, W)`` float32 images of the given views."""
        img = project(self.volume, self.geometry, as_poses(views), self.method, self.isocenter)
        return beer_lambert(img, self.i0) if self.output == "intensity" else img
