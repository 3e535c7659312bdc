"""Networks: the UniMiSS MiT and UniMiSS+ MiT+ backbones (2D/3D switchable), decoders, heads and task networks."""

from unimiss_monai.networks.blocks import *  # noqa: F401,F403
from unimiss_monai.networks.heads import ClassificationHead, DINOHead, SegmentationHead
from unimiss_monai.networks.nets import (
    MiT, MiTDecoder, MiTEncoder, MiTPlus, UniMissBackbone, UniMissClassifier, UniMissSegmentation, build_backbone,
)
from unimiss_monai.networks.param_groups import param_groups_lrd
from unimiss_monai.networks.pretrained import LoadReport, backbone_info, detect_variant, load_pretrained
from unimiss_monai.networks.variants import (
    VARIANTS, VariantConfig, check_input_size, get_variant, stage_grids, tiny_overrides, total_stride, valid_input_sizes,
)

__all__ = [
    "VARIANTS", "ClassificationHead", "DINOHead", "LoadReport", "MiT", "MiTDecoder", "MiTEncoder", "MiTPlus",
    "SegmentationHead", "UniMissBackbone", "UniMissClassifier", "UniMissSegmentation", "VariantConfig",
    "backbone_info", "build_backbone", "check_input_size", "detect_variant", "get_variant", "load_pretrained",
    "param_groups_lrd", "stage_grids", "tiny_overrides", "total_stride", "valid_input_sizes",
]
