"""Digitally reconstructed radiographs (DRRs) from CT: cone-beam geometry, exact Siddon and trilinear projectors
(compiled numba kernels on the CPU, a pure-PyTorch path for GPU/autograd), label thickness maps and CT slabs.

Conventions (RAS+ world, row 0 superior, each view hung like its film) are documented in :mod:`.geometry`.
"""

from unimiss_monai.drr.attenuation import MU_WATER_70KEV, beer_lambert, hu_to_mu, to_radiograph
from unimiss_monai.drr.geometry import (VIEW_ALIASES, VIEW_ANGLES, ConeBeam, Pose, as_pose, canonical_view,
                                        canonical_views, detector_affine)
from unimiss_monai.drr.labels import label_masks, present_labels, project_labels
from unimiss_monai.drr.module import DRR
from unimiss_monai.drr.render import METHODS, OUTPUTS, as_poses, project, render
from unimiss_monai.drr.slabs import Slab, fit_slab_detector, render_slabs, split_slabs, superior_axis
from unimiss_monai.drr.volume import PreparedVolume, as_affine, prepare_volume, volume_center

__all__ = [
    "MU_WATER_70KEV", "beer_lambert", "hu_to_mu", "to_radiograph",
    "VIEW_ALIASES", "VIEW_ANGLES", "ConeBeam", "Pose", "as_pose", "canonical_view", "canonical_views",
    "detector_affine",
    "METHODS", "OUTPUTS", "as_poses", "project", "render",
    "label_masks", "present_labels", "project_labels", "DRR",
    "Slab", "fit_slab_detector", "render_slabs", "split_slabs", "superior_axis",
    "PreparedVolume", "as_affine", "prepare_volume", "volume_center",
]
