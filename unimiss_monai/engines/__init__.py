"""unimiss_monai.engines."""

from unimiss_monai.engines.drr_generation import DRRGenerationError, DRRGenerator  # noqa: F401

from unimiss_monai.engines.segmentation_inference import SegmentationWriter, find_segmentation_inputs  # noqa: F401
from unimiss_monai.engines.segmentation_report import SegmentationReport, compute_segmentation_metrics, save_overlay_grid, write_segmentation_report  # noqa: F401
from unimiss_monai.engines.pretraining import PretrainingTrainer  # noqa: F401
from unimiss_monai.engines.pretraining_data import CheckSpatialDimsd, PhaseLoader, ResumableSampler, SeededDataset, load_pretraining_datalist, make_loader  # noqa: F401
from unimiss_monai.engines.student_teacher import MultiCropWrapper, StudentTeacher  # noqa: F401
from unimiss_monai.engines.attention_rollout import attention_rollout, capture_attention, last_stage_blocks, rollout  # noqa: F401
from unimiss_monai.engines.saliency import default_target_layer, grad_cam, saliency_png  # noqa: F401
from unimiss_monai.engines.tolerant_inference import ForwardFailureGuard, TolerantDataset, guard_forward  # noqa: F401
from unimiss_monai.engines.classification_inference import ClassProbabilityWriter  # noqa: F401
