"""Deprecated: the pretraining loaders moved to :mod:`unimiss_monai.data.loaders`, the datalist reader to
:mod:`unimiss_monai.data.pretraining_datalist` and ``CheckSpatialDimsd`` to :mod:`unimiss_monai.transforms`."""

from unimiss_monai.utils.lazy import moved_names

_LOADERS = "unimiss_monai.data.loaders"
__getattr__ = moved_names(__name__, {
    **{n: _LOADERS for n in ("COUNT_KEY", "SKIPPED_KEY", "PhaseLoader", "ResumableSampler", "SeededDataset",
                             "collate_skipping_corrupt", "make_loader")},
    "failure_reason": "unimiss_monai.utils.errors",
    "load_pretraining_datalist": "unimiss_monai.data.pretraining_datalist",
    "CheckSpatialDimsd": "unimiss_monai.transforms.utility",
})
