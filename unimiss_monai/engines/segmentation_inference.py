"""Deprecated module: its names moved to :mod:`unimiss_monai.handlers.segmentation_writer` and
:mod:`unimiss_monai.data.segmentation_inputs`."""

from unimiss_monai.utils.lazy import moved_names

__getattr__ = moved_names(__name__, {
    "SegmentationWriter": "unimiss_monai.handlers.segmentation_writer",
    "find_segmentation_inputs": "unimiss_monai.data.segmentation_inputs",
})
