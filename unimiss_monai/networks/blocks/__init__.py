"""Building blocks of the UniMiSS backbones (each switchable between 2D and 3D)."""

from unimiss_monai.networks.blocks.attention import SpatialReductionAttention
from unimiss_monai.networks.blocks.conv import ConvNormAct
from unimiss_monai.networks.blocks.deformable_attention_1d import DeformableAttention1d
from unimiss_monai.networks.blocks.memory_format import channels_last_weights
from unimiss_monai.networks.blocks.mlp import Mlp
from unimiss_monai.networks.blocks.patch_embed import PatchEmbed, PatchExpand
from unimiss_monai.networks.blocks.pos_embed import PositionEmbedding, resize_pos_embed
from unimiss_monai.networks.blocks.transformer_block import TransformerBlock

__all__ = [
    "ConvNormAct", "DeformableAttention1d", "Mlp", "PatchEmbed", "PatchExpand", "PositionEmbedding", "SpatialReductionAttention",
    "TransformerBlock", "channels_last_weights", "resize_pos_embed",
]
