"""2D radiograph loading (PNG / DICOM / NIfTI agree), grey conversion, mask checks and the PNG overlay writer."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage
from PIL import Image

from unimiss_monai.data.locators import find_real_radiograph
from unimiss_monai.data.xray import (
    AsGreyRadiograph,
    AsGreyRadiographd,
    CheckMultiLabelMaskd,
    SaveOverlayPNGd,
    load_radiograph,
    overlay_rgb,
    write_overlay_png,
)


@pytest.fixture
def picture() -> np.ndarray:
    """(rows, cols) uint8 picture with a distinct value at each pixel position along both axes."""
    rows, cols = 12, 20
    return (np.arange(rows)[:, None] * 20 + np.arange(cols)[None, :]).astype(np.uint8)


def test_png_grey_and_rgb_and_nifti_load_alike(tmp_path, picture):
    Image.fromarray(picture).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([picture] * 3, -1)).save(tmp_path / "rgb.png")
    # the NIfTI stores x (columns) first, as MONAI's readers return PNG and DICOM
    nib.save(nib.Nifti1Image(picture.T.astype(np.float32), np.eye(4)), str(tmp_path / "grey.nii.gz"))
    nib.save(nib.Nifti1Image(picture.T[..., None].astype(np.float32), np.eye(4)), str(tmp_path / "grey3d1.nii.gz"))
    loaded = [load_radiograph(tmp_path / n) for n in ("grey.png", "rgb.png", "grey.nii.gz", "grey3d1.nii.gz")]
    for img in loaded:
        assert tuple(img.shape) == (1, picture.shape[1], picture.shape[0])
        np.testing.assert_array_equal(img[0].numpy(), picture.T.astype(np.float32))


def test_monochrome1_is_inverted():
    img = MetaTensor(torch.tensor([[[0.0, 10.0], [4.0, 6.0]]]), meta={"00280004": {"vr": "CS", "Value": ["MONOCHROME1"]}})
    out = AsGreyRadiograph()(img)
    np.testing.assert_array_equal(out.numpy(), [[[10.0, 0.0], [6.0, 4.0]]])
    np.testing.assert_array_equal(AsGreyRadiograph(invert_monochrome1=False)(img).numpy(), img.numpy())
    # ITK has inverted already (its meta uses "0028|0004" keys): left alone
    itk = MetaTensor(img.as_tensor(), meta={"0028|0004": "MONOCHROME1 "})
    np.testing.assert_array_equal(AsGreyRadiograph()(itk).numpy(), img.numpy())


@pytest.mark.slow
def test_real_dicom_radiograph_loads_as_one_2d_channel():
    path = find_real_radiograph()
    if path is None:
        pytest.skip("pydicom-data is not installed")
    img = load_radiograph(path)
    via_pydicom = AsGreyRadiograph()(LoadImage(image_only=True, ensure_channel_first=True, reader="PydicomReader")(str(path)))
    # both readers give the same picture up to an intensity offset (stored vs inverted values)
    np.testing.assert_allclose((img - img.mean()).numpy(), (via_pydicom - via_pydicom.mean()).numpy(), atol=1e-2)
    assert img.ndim == 3 and img.shape[0] == 1 and min(img.shape[1:]) > 1000
    # MONOCHROME1 inverted: the lung fields (dark on a display) get lower values than the mediastinum
    x, y = img.shape[1:]
    centre = img[0, x // 2 - 50 : x // 2 + 50, y // 2 - 50 : y // 2 + 50].mean()
    side = img[0, x // 4 - 50 : x // 4 + 50, y // 2 - 50 : y // 2 + 50].mean()
    assert centre > side


def test_refuses_3d_volume_and_wrong_channels():
    volume = MetaTensor(torch.zeros(1, 8, 8, 5), meta={"filename_or_obj": "ct.nii.gz"})
    with pytest.raises(ValueError, match=r"ct.nii.gz: got a 3D volume"):
        AsGreyRadiograph()(volume)
    two = MetaTensor(torch.rand(2, 8, 8), meta={"filename_or_obj": "two.nii.gz"})
    with pytest.raises(ValueError, match=r"two.nii.gz: expected a grey radiograph .* got 2 channels"):
        AsGreyRadiographd("image")({"image": two})
    colour = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="got 3 channels"):
        AsGreyRadiograph()(colour)


def _pair(mask: torch.Tensor, size=(8, 6)):
    image = MetaTensor(torch.rand(1, *size), meta={"filename_or_obj": "img.nii.gz"})
    return {"image": image, "label": MetaTensor(mask, meta={"filename_or_obj": "lab.nii.gz"})}


def test_mask_checks():
    check = CheckMultiLabelMaskd("label", structures=["a", "b"])
    good = torch.zeros(2, 8, 6, 1)
    good[1, 2:4] = 1
    out = check(_pair(good))["label"]
    assert tuple(out.shape) == (2, 8, 6) and out.sum() == good.sum()
    with pytest.raises(ValueError, match=r"lab.nii.gz: label has 3 channels, expected 2"):
        check(_pair(torch.zeros(3, 8, 6)))
    bad_values = good.clone()
    bad_values[0, 0, 0] = 2
    with pytest.raises(ValueError, match=r"lab.nii.gz: label values \[2.0\] are outside"):
        check(_pair(bad_values))
    with pytest.raises(ValueError, match=r"label spatial size \(8, 5\) does not match image img.nii.gz size \(8, 6\)"):
        check(_pair(torch.zeros(2, 8, 5)))


def test_overlay_colours_and_orientation(tmp_path):
    image = torch.zeros(1, 10, 4)  # x=10 columns, y=4 rows
    masks = torch.zeros(2, 10, 4)
    masks[0, 7, 1] = 1  # column 7, row 1
    masks[1, 7, 1] = 1  # overlap blends both colours
    masks[1, 2, 3] = 1
    rgb = overlay_rgb(image, masks, alpha=0.5, colours=[(200, 0, 0), (0, 100, 0)])
    assert rgb.shape == (4, 10, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[3, 2], [0, 50, 0])
    np.testing.assert_array_equal(rgb[1, 7], [50, 50, 0])
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
    path = write_overlay_png(tmp_path / "sub" / "o.png", image, masks, names=["a", "b"])
    assert Image.open(path).size == (10, 4)
    assert not list((tmp_path / "sub").glob(".*tmp"))
    with pytest.raises(ValueError, match="do not match"):
        overlay_rgb(image, torch.zeros(1, 9, 4))


def test_save_overlay_transform_names_file_after_input(tmp_path):
    image = MetaTensor(torch.rand(3, 16, 12), meta={"filename_or_obj": "/data/case_07.nii.gz"})
    pred = torch.zeros(2, 16, 12, 1)
    pred[0, 4:8, 4:8] = 1
    SaveOverlayPNGd("pred", output_dir=tmp_path, names=["a", "b"])({"image": image, "pred": pred})
    written = tmp_path / "case_07_overlay.png"
    assert written.exists() and Image.open(written).size == (16, 12)
