"""The inputs of a CT segmentation run carry the case name that names each output: a datalist entry's ``name`` (two
entries of one file name, ``a/scan.nii.gz`` and ``b/scan.nii.gz``, would otherwise clash), a series folder's path
below the folder, a file's name without its format. A datalist name that is a path is refused."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from unimiss_monai.data.case_names import NAME_KEY
from unimiss_monai.data.ct_io import CTInputError
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.data.segmentation_inputs import find_segmentation_inputs


def test_datalist_names_and_folder_names_reach_the_inputs(tmp_path):
    p = make_ct_phantom((16, 16, 8))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(p.hu, p.affine), tmp_path / folder / "scan.nii.gz")
    entries = [{"image": "a/scan.nii.gz", "name": "first"}, {"image": "b/scan.nii.gz", "name": "second"}]
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": entries}))
    assert find_segmentation_inputs(tmp_path) == [
        {"image": str(tmp_path / "a" / "scan.nii.gz"), NAME_KEY: "first"},
        {"image": str(tmp_path / "b" / "scan.nii.gz"), NAME_KEY: "second"},
    ]
    folder = tmp_path / "b"
    write_dicom_series(p.hu.astype(np.int16), p.affine, folder / "P1" / "SE1")
    assert [(i["image"], i[NAME_KEY]) for i in find_segmentation_inputs(folder)] == [
        (str(folder / "P1" / "SE1"), "P1_SE1"), (str(folder / "scan.nii.gz"), "scan")]


@pytest.mark.parametrize("name", ["../escaped", "a/b", "a\\b", ".."])
def test_a_datalist_name_that_is_a_path_is_refused(tmp_path, name):
    # a case name names files and a folder under output_dir: "../escaped" wrote the DRRs beside output_dir
    p = make_ct_phantom((16, 16, 8))
    nib.save(nib.Nifti1Image(p.hu, p.affine), tmp_path / "scan.nii.gz")
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": [{"image": "scan.nii.gz", "name": name}]}))
    with pytest.raises(CTInputError, match=r"entry 0 has 'name' = .*plain name without '/'") as err:
        find_segmentation_inputs(tmp_path)
    assert str(tmp_path / "datalist.json") in str(err.value) and "\n" not in str(err.value)
