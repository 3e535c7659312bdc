"""Deprecated module: its names moved to :mod:`unimiss_monai.handlers.class_probability_writer` and
:mod:`unimiss_monai.transforms.utility` (``CheckSpatialDimsd(..., fail_constant=True, check_ct_hu=True)``)."""

from unimiss_monai.utils.lazy import moved_names

__getattr__ = moved_names(__name__, {
    "ClassProbabilityWriter": "unimiss_monai.handlers.class_probability_writer",
    "SALIENCY_METHODS": "unimiss_monai.handlers.class_probability_writer",
    "CheckSpatialDimsd": "unimiss_monai.transforms.utility",
})
