"""Metrics of fine-tuned classifiers and segmenters: plain functions over arrays, and MONAI metric wrappers."""

from unimiss_monai.metrics.classification import (
    MacroAUC,
    MacroAUCMetric,
    average_precision,
    classification_metrics,
    roc_auc,
    roc_curve,
)
from unimiss_monai.metrics.knn import knn_accuracy, knn_predict
from unimiss_monai.metrics.segmentation import METRICS, compute_segmentation_metrics
from unimiss_monai.metrics.uncertainty import bundle_uncertainty, tta_uncertainty

__all__ = [
    "METRICS",
    "MacroAUC",
    "MacroAUCMetric",
    "average_precision",
    "bundle_uncertainty",
    "classification_metrics",
    "compute_segmentation_metrics",
    "knn_accuracy",
    "knn_predict",
    "roc_auc",
    "roc_curve",
    "tta_uncertainty",
]
