"""Self-supervised objectives of UniMiSS / UniMiSS+ (one loss per module; schedules live in ``unimiss_monai.utils``)."""

from unimiss_monai.losses.classification import ClassificationLoss
from unimiss_monai.losses.cross_dimension import CrossDimensionDINOLoss, average_slice_logits
from unimiss_monai.losses.deep_supervision import StackedDeepSupervisionLoss
from unimiss_monai.losses.deepcluster_v2 import DeepClusterV2Loss
from unimiss_monai.losses.dino import CenterUpdate, DINOLoss, shared_center_dino, split_views
from unimiss_monai.losses.masked_embedding import MaskedEmbeddingLoss, random_token_mask
from unimiss_monai.losses.reconstruction import ReconstructionMSELoss, minmax_normalize
from unimiss_monai.losses.sinkhorn import sinkhorn_knopp
from unimiss_monai.losses.swav import SwAVLoss
from unimiss_monai.losses.unimiss_plus import UniMissPlusLoss

__all__ = [
    "CenterUpdate",
    "ClassificationLoss",
    "CrossDimensionDINOLoss",
    "DINOLoss",
    "DeepClusterV2Loss",
    "MaskedEmbeddingLoss",
    "ReconstructionMSELoss",
    "StackedDeepSupervisionLoss",
    "SwAVLoss",
    "UniMissPlusLoss",
    "average_slice_logits",
    "minmax_normalize",
    "random_token_mask",
    "shared_center_dino",
    "sinkhorn_knopp",
    "split_views",
]
