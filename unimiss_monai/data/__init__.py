"""Data: data sets, samplers and loaders, the pretraining datalist, image IO and grid checks, atomic writers, sample
data sets, real-data locators and synthetic phantoms. Names are imported on first use (PEP 562).

This room imports only ``conventions`` and ``utils`` (see ARCHITECTURE.md): no transforms, networks or engines; the
one exception, ``sample_sets``, renders DRRs of its phantoms with ``drr``.
"""

# bound now, not lazily: ``samples`` is both this function and a submodule, and whichever import comes first would
# otherwise decide what ``unimiss_monai.data.samples`` is (numpy is the only cost)
from unimiss_monai.data.samples import find_dataset, samples  # noqa: F401
from unimiss_monai.utils.lazy import lazy_exports

_EXPORTS = {
    "unimiss_monai.data.case_names": ("CaseNames",),
    "unimiss_monai.data.ct_inputs": ("CTCase", "find_ct_cases", "read_label_names"),
    "unimiss_monai.data.ct_io": ("CTInputError", "load_ct", "load_label_map"),
    "unimiss_monai.data.ct_series_reader": ("CTSeriesReader",),
    "unimiss_monai.data.datalists": ("load_datalist", "read_split"),
    "unimiss_monai.data.dicom_series": ("write_dicom_series",),
    "unimiss_monai.data.disk_cache": ("DiskCacheDataset", "cached_dataset"),
    "unimiss_monai.data.grid_checks": ("check_grid", "check_nifti_header"),
    "unimiss_monai.data.loaders": ("PhaseLoader", "ResumableSampler", "SeededDataset", "collate_skipping_corrupt",
                                   "epoch_length", "make_loader", "pretraining_loader"),
    "unimiss_monai.data.locators": ("RealCT", "find_real_ct", "find_real_radiograph", "read_structure_names"),
    "unimiss_monai.data.phantom": ("PHANTOM_HU", "PHANTOM_LABELS", "CTPhantom", "make_ct_phantom", "phantom_affine"),
    "unimiss_monai.data.pretraining_datalist": ("load_pretraining_datalist", "with_sample_index"),
    "unimiss_monai.data.segmentation_inputs": ("find_segmentation_inputs",),
    "unimiss_monai.data.tolerant": ("TolerantDataset",),
    "unimiss_monai.data.writers": ("atomic_path", "check_output_dir", "save_bytes", "save_contact_sheet", "save_ct",
                                   "save_json", "save_nifti", "save_png", "save_torch"),
}
_SUBMODULES = (
    "case_names", "classification_labels", "ct_inputs", "ct_io", "ct_series_reader", "datalists", "dicom_checks",
    "dicom_series", "disk_cache", "folder_marker", "grid_checks", "image_formats", "lesions", "loaders", "locators",
    "output_ledger", "official_layout", "phantom", "pretraining_datalist", "sample_sets", "segmentation_inputs", "series_folders",
    "tolerant", "totalsegmentator", "writers", "xray",
)

__all__ = sorted(["find_dataset", "samples", *(name for names in _EXPORTS.values() for name in names)])
__getattr__, __dir__ = lazy_exports(
    __name__, {**{n: module for module, names in _EXPORTS.items() for n in names}, **{m: "" for m in _SUBMODULES}}
)
