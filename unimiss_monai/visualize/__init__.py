"""Pictures of what a network sees and predicts: saliency maps, attention rollout, label overlays, report figures."""

from unimiss_monai.visualize.attention_rollout import attention_rollout, capture_attention, last_stage_blocks, rollout
from unimiss_monai.visualize.overlay import (
    OVERLAY_COLOURS,
    overlay_rgb,
    representative_slice,
    save_overlay_grid,
    write_overlay_png,
)
from unimiss_monai.visualize.plots import confusion_png, figure_png, roc_png
from unimiss_monai.visualize.saliency import default_target_layer, grad_cam, saliency_png

__all__ = [
    "OVERLAY_COLOURS",
    "attention_rollout",
    "capture_attention",
    "confusion_png",
    "default_target_layer",
    "figure_png",
    "grad_cam",
    "last_stage_blocks",
    "overlay_rgb",
    "representative_slice",
    "rollout",
    "roc_png",
    "save_overlay_grid",
    "saliency_png",
    "write_overlay_png",
]
