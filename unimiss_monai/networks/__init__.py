"""Networks: the UniMiSS MiT and UniMiSS+ MiT+ backbones (2D/3D switchable), decoders, heads, the pretraining
student/teacher pair and task networks."""

from unimiss_monai.networks.blocks import *  # noqa: F401,F403
from unimiss_monai.networks.heads import ClassificationHead, DINOHead, SegmentationHead
from unimiss_monai.networks.inflate import inflate_2d_to_3d
from unimiss_monai.networks.nets import (
    ClusteringHead, ImageVolumeNet, InterSliceTransformer, MiT, MiTDecoder, MiTEncoder, MiTPlus, MultiCropOutput,
    MultiCropWrapper, SliceEncoder, StudentTeacher, UniMissBackbone, UniMissClassifier, UniMissSegmentation,
    build_backbone, pad_slice_sequences, split_backbone_output,
)
from unimiss_monai.networks.param_groups import param_groups_lrd, param_groups_of
from unimiss_monai.networks.pretrained import LoadReport, backbone_info, detect_variant, load_pretrained
from unimiss_monai.networks.publish import check_export_target
from unimiss_monai.networks.variants import (
    PRESETS, SMOKE_WIDTHS, VARIANTS, VariantConfig, check_input_size, get_variant, stage_grids, tiny_overrides, total_stride, valid_input_sizes,
)

__all__ = [
    "PRESETS", "SMOKE_WIDTHS", "VARIANTS", "ClassificationHead", "DINOHead", "LoadReport", "MiT", "MiTDecoder", "MiTEncoder", "MiTPlus",
    "MultiCropOutput", "MultiCropWrapper", "SegmentationHead", "StudentTeacher", "UniMissBackbone",
    "UniMissClassifier", "UniMissSegmentation", "VariantConfig", "backbone_info", "build_backbone", "check_export_target", "check_input_size",
    "detect_variant", "get_variant", "inflate_2d_to_3d", "load_pretrained", "pad_slice_sequences", "param_groups_lrd", "param_groups_of", "split_backbone_output", "stage_grids",
    "tiny_overrides", "total_stride", "valid_input_sizes",
]
