"""Deprecated module: its names moved to :mod:`unimiss_monai.visualize.attention_rollout`."""

from unimiss_monai.utils.lazy import moved_names

__getattr__ = moved_names(__name__, {n: "unimiss_monai.visualize.attention_rollout"
                                     for n in ("attention_rollout", "capture_attention", "last_stage_blocks", "rollout")})
