"""Radiograph transforms: grey conversion (MONOCHROME1, refused inputs), multi-label mask checks, the overlay writer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from unimiss_monai.transforms import AsGreyRadiograph, AsGreyRadiographd, CheckMultiLabelMaskd, SaveOverlayPNGd


def test_monochrome1_is_inverted():
    img = MetaTensor(torch.tensor([[[0.0, 10.0], [4.0, 6.0]]]), meta={"00280004": {"vr": "CS", "Value": ["MONOCHROME1"]}})
    out = AsGreyRadiograph(min_size=2)(img)
    np.testing.assert_array_equal(out.numpy(), [[[10.0, 0.0], [6.0, 4.0]]])
    np.testing.assert_array_equal(AsGreyRadiograph(invert_monochrome1=False, min_size=2)(img).numpy(), img.numpy())
    # ITK has inverted already (its meta uses "0028|0004" keys): left alone
    itk = MetaTensor(img.as_tensor(), meta={"0028|0004": "MONOCHROME1 "})
    np.testing.assert_array_equal(AsGreyRadiograph(min_size=2)(itk).numpy(), img.numpy())
    with pytest.raises(ValueError, match=r"is 2x2 pixels, too small for a radiograph \(at least 16 along each side\)"):
        AsGreyRadiograph()(img)  # a thumbnail: resized to the network's input it would be segmented as a chest


def test_a_strip_is_no_radiograph():
    strip = MetaTensor(torch.rand(1, 3000, 1, 1), meta={"filename_or_obj": "/d/strip.png"})
    with pytest.raises(ValueError, match=r"^/d/strip.png: is 3000x1 pixels, too small for a radiograph"):
        AsGreyRadiograph()(strip)
    assert AsGreyRadiograph()(MetaTensor(torch.rand(1, 16, 20))).shape == (1, 16, 20)


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
    with pytest.raises(ValueError, match=r"lab.nii.gz: label values \[2.0\] are outside .*; save each structure's "
                                         r"channel as 0/1 \(a resampled mask: nearest neighbour keeps 0/1\)$"):
        check(_pair(bad_values))
    bad_values[0, 0, 0] = 255
    with pytest.raises(ValueError, match=r"label values \[255.0\] .*; a mask saved as an 8-bit image, 0/255: save it "
                                         r"as 0/1$"):
        check(_pair(bad_values))
    with pytest.raises(ValueError, match=r"label spatial size \(8, 5\) does not match image img.nii.gz size \(8, 6\)"):
        check(_pair(torch.zeros(2, 8, 5)))


def test_save_overlay_transform_names_file_after_input(tmp_path):
    image = MetaTensor(torch.rand(3, 16, 12), meta={"filename_or_obj": "/data/case_07.nii.gz"})
    pred = torch.zeros(2, 16, 12, 1)
    pred[0, 4:8, 4:8] = 1
    SaveOverlayPNGd("pred", output_dir=tmp_path, names=["a", "b"])({"image": image, "pred": pred})
    written = tmp_path / "case_07_overlay.png"
    assert written.exists() and Image.open(written).size == (16, 12)
