"""Encoder, decoder, pretraining backbones and task networks."""

from unimiss_monai.networks.nets.backbone import MiT, MiTPlus, UniMissBackbone, build_backbone
from unimiss_monai.networks.nets.classification import UniMissClassifier
from unimiss_monai.networks.nets.decoder import MiTDecoder
from unimiss_monai.networks.nets.encoder import MiTEncoder
from unimiss_monai.networks.nets.segmentation import UniMissSegmentation

__all__ = [
    "MiT", "MiTDecoder", "MiTEncoder", "MiTPlus", "UniMissBackbone", "UniMissClassifier", "UniMissSegmentation",
    "build_backbone",
]
