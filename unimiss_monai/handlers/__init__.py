"""unimiss_monai.handlers: ignite handlers, one per file."""

from unimiss_monai.handlers.checkpoint_info import CheckpointInfo  # noqa: F401
from unimiss_monai.handlers.freeze_encoder import FreezeEncoder, set_encoder_trainable  # noqa: F401
from unimiss_monai.handlers.last_layer_freeze import LastLayerFreezeHandler  # noqa: F401
from unimiss_monai.handlers.pretrained_init import default_pretrained_path, load_pretrained_init  # noqa: F401
from unimiss_monai.handlers.collapse_monitor import CollapseMonitor  # noqa: F401
from unimiss_monai.handlers.loss_curves import EpochLossMeans, LossCurvePlotter, scalar_outputs  # noqa: F401
from unimiss_monai.handlers.training_checkpoint import TrainingCheckpoint  # noqa: F401
from unimiss_monai.handlers.non_finite_guard import NonFiniteGuard  # noqa: F401
from unimiss_monai.handlers.best_model_saver import BestModelSaver  # noqa: F401
from unimiss_monai.handlers.publish_best_model import PublishBestModel  # noqa: F401
from unimiss_monai.handlers.epoch_seed import EpochSeed  # noqa: F401
from unimiss_monai.handlers.run_progress import RunProgress  # noqa: F401
from unimiss_monai.handlers.knn_probe import KNNProbe, knn_accuracy, load_probe_items  # noqa: F401
from unimiss_monai.handlers.forward_failure_guard import ForwardFailureGuard, guard_forward  # noqa: F401
from unimiss_monai.handlers.inference_summary import InferenceSummary  # noqa: F401
from unimiss_monai.handlers.class_probability_writer import ClassProbabilityWriter  # noqa: F401
from unimiss_monai.handlers.segmentation_writer import SegmentationWriter  # noqa: F401
from unimiss_monai.handlers.classification_report import ClassificationReport, write_report  # noqa: F401
from unimiss_monai.handlers.segmentation_report import SegmentationReport, write_segmentation_report  # noqa: F401
from unimiss_monai.handlers.tensorboard_stats import TensorBoardStatsHandler  # noqa: F401
