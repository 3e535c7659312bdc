"""Which pretraining recipe an export comes from, and what the fine-tuning networks accept of it.

UniMiSS / UniMiSS+ exports (``StudentTeacher.export``) carry no ``recipe`` field: their ``info`` is
:func:`~unimiss_monai.networks.pretrained.backbone_info` of a MiT backbone. An intra-inter export
(``ImageVolumeNet.export``, Nguyen et al., AAAI 2023) records ``recipe: "intra_inter"``, the network's constructor
arguments and, for the MiT 2D branch, the same MiT fields, so the fine-tuning loader reads its slice encoder
(``slice_encoder.backbone.*``) like a 2D-only MiT backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from unimiss_monai.networks.nets.image_volume import ImageVolumeNet
from unimiss_monai.networks.nets.slice_encoder import RESNET_BACKBONES

__all__ = ["INTRA_INTER", "SLICE_ENCODER_PREFIX", "check_recipe", "intra_inter_info"]

INTRA_INTER = "intra_inter"
#: where an intra-inter export keeps its 2D encoder (``ImageVolumeNet.slice_encoder.backbone``)
SLICE_ENCODER_PREFIX = "slice_encoder.backbone."


def intra_inter_info(net: ImageVolumeNet, mit_info: Mapping[str, Any] | None) -> dict[str, Any]:
    """``info`` of an intra-inter export: ``recipe``, ``slice_backbone``, ``network`` (the constructor arguments of
    ``net``: ``ImageVolumeNet(**info["network"])`` rebuilds it; nested, because the inter-slice ``depth`` /
    ``num_heads`` are not the MiT fields of the same names), plus ``mit_info`` (the MiT fields of its 2D encoder) or,
    for a MONAI ResNet, ``variant`` = its name, ``family`` = ``"resnet"``, ``spatial_dims`` = ``[2]``."""
    recipe = {"recipe": INTRA_INTER, "slice_backbone": net.config["backbone"], "network": dict(net.config)}
    if mit_info is None:
        return {"variant": recipe["slice_backbone"], "family": "resnet", "spatial_dims": [2], **recipe}
    return {**mit_info, **recipe}


def check_recipe(info: Mapping[str, Any], model: nn.Module) -> None:
    """Refuse, in one line, an intra-inter export whose slice encoder ``model`` cannot take: a MONAI ResNet into the
    MiT-based UniMiSS networks (an :class:`ImageVolumeNet` takes any)."""
    if info.get("recipe") != INTRA_INTER or isinstance(model, ImageVolumeNet):
        return
    if info.get("slice_backbone") in RESNET_BACKBONES or info.get("family") == "resnet":
        raise ValueError(
            f"weights are an intra-inter export with a MONAI {info.get('slice_backbone')} slice encoder; the UniMiSS "
            "segmentation and classification networks are MiT-based and cannot take it: pretrain with "
            "slice_backbone mit_tiny, mit_small or mitplus (the MiT 2D branch)"
        )
