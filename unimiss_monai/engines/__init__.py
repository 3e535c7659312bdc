"""Engines: :class:`~unimiss_monai.engines.pretraining.PretrainingTrainer` and
:class:`~unimiss_monai.engines.drr_generation.DRRGenerator`, imported on first use.

The other names this package used to export moved to the room of their concept; they still resolve here for one
release, with a ``DeprecationWarning`` naming the new place.
"""

from unimiss_monai.utils.lazy import lazy_exports, moved_names

_ENGINES = {
    "DRRGenerationError": "unimiss_monai.engines.drr_generation",
    "DRRGenerator": "unimiss_monai.engines.drr_generation",
    "PretrainingTrainer": "unimiss_monai.engines.pretraining",
}
_MOVED = {
    "SegmentationWriter": "unimiss_monai.handlers.segmentation_writer",
    "SegmentationReport": "unimiss_monai.handlers.segmentation_report",
    "write_segmentation_report": "unimiss_monai.handlers.segmentation_report",
    "ClassProbabilityWriter": "unimiss_monai.handlers.class_probability_writer",
    "ForwardFailureGuard": "unimiss_monai.handlers.forward_failure_guard",
    "guard_forward": "unimiss_monai.handlers.forward_failure_guard",
    "compute_segmentation_metrics": "unimiss_monai.metrics.segmentation",
    "save_overlay_grid": "unimiss_monai.visualize.overlay",
    "attention_rollout": "unimiss_monai.visualize.attention_rollout",
    "capture_attention": "unimiss_monai.visualize.attention_rollout",
    "last_stage_blocks": "unimiss_monai.visualize.attention_rollout",
    "rollout": "unimiss_monai.visualize.attention_rollout",
    "default_target_layer": "unimiss_monai.visualize.saliency",
    "grad_cam": "unimiss_monai.visualize.saliency",
    "saliency_png": "unimiss_monai.visualize.saliency",
    "CheckSpatialDimsd": "unimiss_monai.transforms.utility",
    "MultiCropWrapper": "unimiss_monai.networks.nets.student_teacher",
    "StudentTeacher": "unimiss_monai.networks.nets.student_teacher",
    "PhaseLoader": "unimiss_monai.data.loaders",
    "ResumableSampler": "unimiss_monai.data.loaders",
    "SeededDataset": "unimiss_monai.data.loaders",
    "make_loader": "unimiss_monai.data.loaders",
    "load_pretraining_datalist": "unimiss_monai.data.pretraining_datalist",
    "TolerantDataset": "unimiss_monai.data.tolerant",
    "find_segmentation_inputs": "unimiss_monai.data.segmentation_inputs",
}
_SUBMODULES = (
    "attention_rollout", "classification_inference", "classification_report", "drr_done_records", "drr_generation",
    "pretraining", "pretraining_data", "saliency", "segmentation_inference", "segmentation_report", "student_teacher",
    "tolerant_inference",
)

__all__ = sorted(_ENGINES)
_lazy, __dir__ = lazy_exports(__name__, {**_ENGINES, **{m: "" for m in _SUBMODULES}})
_moved = moved_names(__name__, _MOVED)


def __getattr__(name: str):
    return _moved(name) if name in _MOVED else _lazy(name)
