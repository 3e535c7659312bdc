"""Deprecated module: its names moved to :mod:`unimiss_monai.metrics.segmentation`,
:mod:`unimiss_monai.handlers.segmentation_report` and :mod:`unimiss_monai.visualize.overlay`."""

from unimiss_monai.utils.lazy import moved_names

_METRICS, _HANDLER, _OVERLAY = ("unimiss_monai.metrics.segmentation", "unimiss_monai.handlers.segmentation_report",
                                "unimiss_monai.visualize.overlay")
__getattr__ = moved_names(__name__, {
    "METRICS": _METRICS, "compute_segmentation_metrics": _METRICS,
    "SegmentationReport": _HANDLER, "write_segmentation_report": _HANDLER,
    "save_overlay_grid": _OVERLAY, "representative_slice": _OVERLAY,
})
