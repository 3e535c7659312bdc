"""Deprecated module: its names moved to :mod:`unimiss_monai.metrics.classification` (metrics) and
:mod:`unimiss_monai.handlers.classification_report` (the report handler and files)."""

from unimiss_monai.utils.lazy import moved_names

_METRICS, _HANDLER = "unimiss_monai.metrics.classification", "unimiss_monai.handlers.classification_report"
__getattr__ = moved_names(__name__, {
    "roc_curve": _METRICS, "roc_auc": _METRICS, "average_precision": _METRICS, "classification_metrics": _METRICS,
    "MacroAUCMetric": _METRICS, "MacroAUC": _METRICS,
    "write_report": _HANDLER, "ClassificationReport": _HANDLER,
})
