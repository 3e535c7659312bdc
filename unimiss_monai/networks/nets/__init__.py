"""Encoder, decoder, pretraining backbones, the student/teacher pair and task networks."""

from unimiss_monai.networks.nets.backbone import MiT, MiTPlus, UniMissBackbone, build_backbone
from unimiss_monai.networks.nets.classification import UniMissClassifier
from unimiss_monai.networks.nets.clustering_head import ClusteringHead
from unimiss_monai.networks.nets.decoder import MiTDecoder
from unimiss_monai.networks.nets.encoder import MiTEncoder
from unimiss_monai.networks.nets.image_volume import ImageVolumeNet, pad_slice_sequences
from unimiss_monai.networks.nets.inter_slice_transformer import InterSliceTransformer
from unimiss_monai.networks.nets.segmentation import UniMissSegmentation
from unimiss_monai.networks.nets.slice_encoder import SliceEncoder
from unimiss_monai.networks.nets.student_teacher import (
    MultiCropOutput, MultiCropWrapper, StudentTeacher, split_backbone_output,
)

__all__ = [
    "ClusteringHead", "ImageVolumeNet", "InterSliceTransformer", "MiT", "MiTDecoder", "MiTEncoder", "MiTPlus",
    "MultiCropOutput", "MultiCropWrapper", "SliceEncoder", "StudentTeacher", "UniMissBackbone", "UniMissClassifier",
    "UniMissSegmentation", "build_backbone", "pad_slice_sequences", "split_backbone_output",
]
