"""Data helpers: sample data sets, real-data locators, synthetic phantoms, image loading."""

from unimiss_monai.data.ct_inputs import CTCase, find_ct_cases, read_label_names
from unimiss_monai.data.ct_io import CTInputError, load_ct, load_label_map
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.locators import RealCT, find_real_ct, find_real_radiograph, read_structure_names
from unimiss_monai.data.phantom import PHANTOM_HU, PHANTOM_LABELS, CTPhantom, make_ct_phantom, phantom_affine
from unimiss_monai.data.samples import find_dataset, samples
from unimiss_monai.data.writers import atomic_path, check_output_dir, save_contact_sheet, save_json, save_nifti, save_png

__all__ = [
    "CTCase", "find_ct_cases", "read_label_names",
    "CTInputError", "load_ct", "load_label_map",
    "write_dicom_series",
    "RealCT", "find_real_ct", "find_real_radiograph", "read_structure_names",
    "PHANTOM_HU", "PHANTOM_LABELS", "CTPhantom", "make_ct_phantom", "phantom_affine",
    "find_dataset", "samples",
    "atomic_path", "check_output_dir", "save_contact_sheet", "save_json", "save_nifti", "save_png",
]
