"""Random crops and the axial slice sampler: shapes, scale ranges, padding, determinism, dict vs array."""

import pytest
import torch

from unimiss_monai.transforms import (
    RandResizedCrop,
    RandResizedCropD,
    RandScaledCrop,
    RandScaledCropd,
)


@pytest.mark.parametrize("scale", [(0.14, 1.0), (0.3, 1.0), (0.5, 0.6)])
def test_rand_resized_crop_area_within_scale(scale):
    crop = RandResizedCrop((32, 32), scale=scale, ratio=(3 / 4, 4 / 3))
    crop.set_random_state(0)
    h, w = 120, 100
    for _ in range(40):
        out = crop(torch.rand(1, h, w))
        assert out.shape == (1, 32, 32) and out.dtype == torch.float32
        ch, cw = crop._size
        # rounding of each side moves the area by at most about one row/column
        assert scale[0] * h * w - (ch + cw) <= ch * cw <= scale[1] * h * w + (ch + cw)
        assert 3 / 4 - 0.05 <= cw / ch <= 4 / 3 + 0.05


def test_rand_resized_crop_content_is_a_crop():
    img = torch.arange(64.0 * 64).reshape(1, 64, 64)
    crop = RandResizedCrop((16, 16), scale=(0.0625, 0.0625), ratio=(1.0, 1.0))  # 16x16 region: resize is identity
    crop.set_random_state(3)
    out = crop(img)
    (y, x), (ch, cw) = crop._start, crop._size
    assert (ch, cw) == (16, 16)
    assert torch.equal(out, img[:, y : y + 16, x : x + 16])


def test_rand_resized_crop_3d_in_plane_and_small_depth_padded():
    crop = RandResizedCrop((8, 24, 24), scale=(0.3, 1.0))
    out = crop(torch.randn(1, 5, 40, 50))  # fewer slices than the depth window
    assert out.shape == (1, 8, 24, 24)
    full_depth = RandResizedCrop((-1, 24, 24))(torch.randn(1, 7, 40, 50))
    assert full_depth.shape == (1, 7, 24, 24)
    with pytest.raises(ValueError, match="spatial dims"):
        crop(torch.randn(1, 40, 50))


def test_rand_scaled_crop_sizes_and_padding():
    crop = RandScaledCrop((16, 96, 96), scale_range=[(1, 1), (1.4, 1.8), (1.4, 1.8)], resize=False)
    crop.set_random_state(1)
    for _ in range(20):
        out = crop(torch.randn(1, 20, 300, 300))
        d, h, w = out.shape[1:]
        assert d == 16 and int(96 * 1.4) <= h <= int(96 * 1.8) and int(96 * 1.4) <= w <= int(96 * 1.8)
    # an image smaller than the crop: padded symmetrically with its minimum (-3.25, one voxel of the image), so with
    # scale 1 and no resize the crop is the whole padded image, the image at its centre
    small = torch.arange(4 * 30 * 40, dtype=torch.float32).reshape(1, 4, 30, 40) / 100.0 + 5.0
    small[0, 2, 17, 9] = -3.25
    out = RandScaledCrop((16, 96, 96), scale_range=(1.0, 1.0), resize=False)(small)
    assert out.shape == (1, 16, 96, 96)
    inside = (slice(None), slice(6, 10), slice(33, 63), slice(28, 68))  # (16-4)/2, (96-30)/2, (96-40)/2 before
    assert torch.equal(out[inside], small)
    padding = torch.ones_like(out, dtype=torch.bool)
    padding[inside] = False
    assert torch.equal(out[padding], torch.full((int(padding.sum()),), -3.25))


def test_determinism_and_dict_matches_array():
    img = torch.rand(1, 64, 80)
    a = RandResizedCrop((24, 24), scale=(0.2, 1.0)).set_random_state(7)
    d = RandResizedCropD(["x", "y"], (24, 24), scale=(0.2, 1.0)).set_random_state(7)
    out = d({"x": img, "y": img * 2})
    ref = a(img)
    assert torch.allclose(out["x"], ref) and torch.allclose(out["y"], 2 * ref)  # one draw for all keys
    a2 = RandScaledCrop((8, 16, 16), (0.8, 1.2)).set_random_state(5)
    d2 = RandScaledCropd("x", (8, 16, 16), (0.8, 1.2)).set_random_state(5)
    vol = torch.rand(1, 12, 40, 40)
    assert torch.allclose(d2({"x": vol})["x"], a2(vol))
    again = RandResizedCrop((24, 24), scale=(0.2, 1.0)).set_random_state(7)
    assert torch.equal(again(img), ref)
