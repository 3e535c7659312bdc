"""Boolean options of the transforms and inferers read as booleans: a nested config option set from the command line
(``--preprocessing#transforms#1#fail_constant false``) arrives as a string, and Python counts ``"false"`` as true."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer

from unimiss_monai.inferers.autocast import AutocastInferer
from unimiss_monai.inferers.openvino import OpenVINOInferer
from unimiss_monai.transforms import AsGreyRadiograph
from unimiss_monai.transforms.croppad.array import RandScaledCrop
from unimiss_monai.transforms.utility.array import CheckImage
from unimiss_monai.transforms.utility.dictionary import CheckSpatialDimsd


def test_image_checks():
    check = CheckImage(check_affine="false", fail_constant="False")
    assert check.check_affine is False and check.fail_constant is False
    torch.testing.assert_close(check(torch.zeros(1, 4, 4)), torch.zeros(1, 4, 4))  # a constant image passes then
    dims = CheckSpatialDimsd("image", 3, squeeze_trailing="no", fail_constant="true", check_ct_hu="false")
    assert dims.squeeze_trailing is False and dims.check_ct_hu is False and dims.check_image.fail_constant is True
    with pytest.raises(ValueError, match="'check_ct_hu' is 'maybe'"):
        CheckSpatialDimsd("image", 3, check_ct_hu="maybe")


def test_radiograph_crop_and_inferers():
    assert AsGreyRadiograph(invert_monochrome1="false").invert_monochrome1 is False
    assert RandScaledCrop((8, 8), resize="false").resize is False
    autocast = AutocastInferer(SimpleInferer(), enabled="false", channels_last="true")
    assert autocast.enabled is False and autocast.channels_last is True
    assert OpenVINOInferer(SimpleInferer(), enabled="false").enabled is False  # needs no openvino when off
