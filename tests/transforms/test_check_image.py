"""CheckImage(d): non-finite values and degenerate grids fail with one line naming the file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged

from unimiss_monai.transforms import CheckImage, CheckImaged


def _image(values, affine=None, name="case.nii.gz"):
    img = MetaTensor(torch.as_tensor(values, dtype=torch.float32), affine=torch.eye(4) if affine is None else affine)
    img.meta["filename_or_obj"] = name
    return img


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_fail_naming_the_file(bad):
    x = torch.zeros(1, 3, 3, 3)
    x[0, 1, 2, 0] = bad
    with pytest.raises(ValueError, match=r"^case\.nii\.gz: has 1 non-finite \(NaN or Inf\) value"):
        CheckImage()(_image(x))


def test_good_image_passes_unchanged_and_integer_images_are_not_scanned():
    x = _image(torch.randn(1, 4, 4, 4))
    assert CheckImaged("image")({"image": x})["image"] is x
    labels = MetaTensor(torch.zeros(1, 4, 4, 4, dtype=torch.uint8), affine=torch.eye(4))
    assert CheckImage()(labels) is labels


def test_degenerate_affine_fails():
    with pytest.raises(ValueError, match="affine is degenerate"):
        CheckImage()(_image(torch.zeros(1, 3, 3, 3), affine=torch.diag(torch.tensor([1.0, 0.0, 1.0, 1.0]))))
    parallel = torch.eye(4)
    parallel[:3, 1] = parallel[:3, 0] * 2  # two voxel axes along the same line
    with pytest.raises(ValueError, match="affine is degenerate"):
        CheckImage()(_image(torch.zeros(1, 3, 3, 3), affine=parallel))
    unchecked = _image(torch.zeros(1, 3, 3, 3), affine=torch.zeros(4, 4))
    assert CheckImage(check_affine=False)(unchecked) is unchecked


def test_a_2d_image_with_a_detector_affine_is_fine():
    # an AP DRR: rows run inferior (-z), columns to the patient's left (-x); the top-left 2x2 block is singular
    affine = torch.zeros(4, 4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[3, 3] = torch.tensor([0.0, 0.0, -1.5]), torch.tensor([-1.5, 0.0, 0.0]), torch.tensor([0.0, -1.0, 0.0]), 1.0
    drr = _image(torch.zeros(1, 8, 8), affine=affine)
    assert CheckImage()(drr) is drr


def test_singular_sform_in_the_file_is_caught_although_the_loader_makes_up_a_grid(tmp_path):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4, 4, 4))
    hdr.set_data_dtype(np.float32)
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 2, 0]
    path = tmp_path / "singular.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), None, header=hdr), path)
    loaded = LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(path)})
    assert abs(float(np.linalg.det(np.asarray(loaded["image"].affine)[:3, :3]))) > 0  # the loader replaced it
    with pytest.raises(ValueError, match="singular.nii.gz: its sform is degenerate"):
        CheckImaged("image")(loaded)



@pytest.mark.parametrize("qform_code", [1, 0])
def test_a_zero_voxel_size_in_the_header_is_caught_although_the_loader_makes_it_1_mm(tmp_path, qform_code):
    # the qform (or, with no form code at all, the fall-back grid) is built from pixdim; nibabel puts 1 for a 0 there
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4, 4, 4))
    hdr.set_data_dtype(np.float32)
    hdr["sform_code"], hdr["qform_code"] = 0, qform_code
    hdr["pixdim"][1:4] = [8.0, 8.0, 2.0]
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), None, header=hdr), path)
    raw = bytearray(path.read_bytes())
    raw[88:92] = np.float32(0).tobytes()  # pixdim[3] (nibabel will not write a 0 there), as some exporters do
    path.write_bytes(bytes(raw))
    assert nib.Nifti1Header(bytes(raw[:348]), check=False)["pixdim"][3] == 0  # nib.load would show a 1
    loaded = LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(path)})
    assert np.allclose(np.linalg.norm(np.asarray(loaded["image"].affine)[:3, :3], axis=0), [8, 8, 1])  # made up
    with pytest.raises(ValueError, match=r"flat.nii: its (qform|voxel size \(pixdim\)) is degenerate \(an axis of length 0 mm"):
        CheckImaged("image")(loaded)
    raw[88:92] = np.float32(2).tobytes()  # the same file with a voxel size passes
    path.write_bytes(bytes(raw))
    CheckImaged("image")(LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(path)}))


def test_a_2d_image_saved_with_a_third_axis_of_size_0_mm_passes(tmp_path):
    # an (X, Y, 1) radiograph whose exporter wrote 0 as the voxel size of the axis it does not extend along
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((6, 5, 1))
    hdr.set_data_dtype(np.float32)
    hdr["pixdim"][1:4] = [0.2, 0.2, 1.0]
    path = tmp_path / "flat2d.nii"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((6, 5, 1), np.float32), None, header=hdr), path)
    raw = bytearray(path.read_bytes())
    raw[88:92] = np.float32(0).tobytes()  # pixdim[3]
    path.write_bytes(bytes(raw))
    CheckImaged("image")(LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(path)}))
    raw[80:84] = np.float32(0).tobytes()  # pixdim[1]: an axis it extends along
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"flat2d.nii: its (qform|voxel size \(pixdim\)) is degenerate"):
        CheckImaged("image")(LoadImaged("image", image_only=True, ensure_channel_first=True)({"image": str(path)}))


def test_dictionary_version_takes_the_array_arguments():
    # CheckImaged is documented as "same arguments after keys": fail_constant was missing, so a blank export passed
    blank = _image(torch.full((1, 4, 4, 4), -1024.0))
    with pytest.raises(ValueError, match=r"^case\.nii\.gz: every voxel has the same value \(-1024\)"):
        CheckImaged("image", fail_constant=True)({"image": blank})
    assert CheckImaged("image")({"image": blank})["image"] is blank
    with pytest.raises(ValueError, match="every voxel"):
        CheckImage(fail_constant=True)(blank)
