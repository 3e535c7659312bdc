"""Review fixes: DRRProject's detector affine, ScaleCTIntensity metadata, per-key crop modes, missing image keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Resize

from unimiss_monai import drr
from unimiss_monai.transforms import (
    CheckMultiLabelMaskd,
    DRRProject,
    RandResizedCrop,
    RandResizedCropd,
    RandScaledCrop,
    RandScaledCropd,
    SaveOverlayPNGd,
    ScaleCTIntensity,
)

KW = dict(detector_shape=(8, 6), pixel_spacing=(2.0, 3.0), sdd=300.0, sid=200.0)


def _translated_ct():
    rng = np.random.default_rng(0)
    affine = torch.diag(torch.tensor([1.1, 0.9, 1.5, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-150.0, 80.0, -400.0], dtype=torch.float64)
    return MetaTensor(torch.tensor(rng.uniform(-1000, 1000, (1, 7, 6, 5)), dtype=torch.float32), affine=affine)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"isocenter": (-145.0, 83.0, -395.0), "principal_point": (4.0, -6.0)},
        {"affine_space": "LPS"},
    ],
)
@pytest.mark.parametrize("view", ["AP", "LL"])
def test_drr_detector_affine_places_pixels_where_the_renderer_does(extra, view):
    ct = _translated_ct()
    out = DRRProject(views=(view,), **KW, **extra)(ct)
    col_first = out.meta["drr_detector_affine"].numpy()  # maps (x = column, y = row, 0, 1) to world
    prep = drr.prepare_volume(ct[0].numpy(), ct.affine, affine_space=extra.get("affine_space", "RAS"))
    geometry = drr.ConeBeam(KW["detector_shape"], KW["pixel_spacing"], KW["sdd"], KW["sid"],
                            extra.get("principal_point", (0.0, 0.0)))
    _, world = prep.detector_frame(geometry, drr.as_pose(view), extra.get("isocenter"))
    _, pixels = geometry.pixel_centres(drr.as_pose(view), extra.get("isocenter", prep.center))
    for r, c in [(0, 0), (7, 5), (3, 1)]:
        expected = world[1] + r * world[2] + c * world[3]
        np.testing.assert_allclose(pixels[r, c], expected, atol=1e-9)  # the two renderer paths agree
        np.testing.assert_allclose((col_first @ [c, r, 0.0, 1.0])[:3], expected, atol=1e-9)


@pytest.mark.parametrize("kwargs", [{"mode": "hu1024"}, {"mode": "window", "a_min": -160, "a_max": 240}])
def test_scale_ct_intensity_keeps_metadata(kwargs):
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-150.0, 80.0, -400.0], dtype=torch.float64)
    img = MetaTensor(torch.full((1, 4, 4, 3), 40.0), affine=affine, meta={"filename_or_obj": "ct_01.nii.gz"})
    out = ScaleCTIntensity(**kwargs)(img)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    torch.testing.assert_close(out.affine, affine)
    assert out.meta["filename_or_obj"] == "ct_01.nii.gz"


@pytest.mark.parametrize(
    "make",
    [
        lambda mode: RandResizedCropd(("image", "mask"), (24, 24), scale=(0.2, 0.5), mode=mode),
        lambda mode: RandScaledCropd(("image", "mask"), (24, 24), scale_range=(0.4, 0.7), mode=mode),
    ],
)
def test_per_key_mode_keeps_mask_binary_and_aligned(make):
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
    image = (yy * 100 + xx)[None]
    mask = (((yy - 30) ** 2 + (xx - 20) ** 2) < 15**2).float()[None]
    crop = make(("bilinear", "nearest"))
    for seed in range(5):
        crop.set_random_state(seed)
        out = crop({"image": image, "mask": mask})
        start, size = crop.transform._start, crop.transform._size
        assert set(torch.unique(out["mask"]).tolist()) <= {0.0, 1.0}
        # both keys used the same box: each equals the array crop of that box with its own mode
        box = (slice(None), *(slice(s, s + n) for s, n in zip(start, size)))
        torch.testing.assert_close(out["mask"], Resize((24, 24), mode="nearest")(mask[box]).as_tensor())
        torch.testing.assert_close(
            out["image"], Resize((24, 24), mode="bilinear", align_corners=False)(image[box]).as_tensor()
        )
    # a single mode is still applied to every key, and the default is unchanged (bilinear)
    single = make(None).set_random_state(1)({"image": image, "mask": mask})
    array = (RandResizedCrop((24, 24), scale=(0.2, 0.5)) if isinstance(crop, RandResizedCropd)
             else RandScaledCrop((24, 24), scale_range=(0.4, 0.7)))
    array.set_random_state(1)
    torch.testing.assert_close(single["image"], array(image))
    torch.testing.assert_close(single["mask"], array(mask, randomize=False))


def test_mode_per_key_length_is_checked():
    with pytest.raises(ValueError, match=r"length 2, got 3"):  # one mode per key, two keys
        RandResizedCropd(("image", "mask"), (8, 8), mode=("bilinear", "nearest", "nearest"))


def test_check_multilabel_mask_allows_missing_image():
    mask = torch.zeros(2, 8, 6, 1)
    mask[1, 2:4] = 1
    check = CheckMultiLabelMaskd("label", structures=["a", "b"], allow_missing_keys=True)
    assert check({"other": 1}) == {"other": 1}
    out = check({"label": mask})  # no image: channels and values still checked, trailing singleton dropped
    assert tuple(out["label"].shape) == (2, 8, 6)
    bad = mask.clone()
    bad[0, 0, 0] = 2
    with pytest.raises(ValueError, match="outside"):
        check({"label": bad})
    with pytest.raises(KeyError, match="image"):  # without allow_missing_keys the image is required
        CheckMultiLabelMaskd("label", structures=["a", "b"])({"label": mask})


def test_save_overlay_allows_missing_image(tmp_path):
    pred = torch.zeros(2, 16, 12)
    save = SaveOverlayPNGd("pred", output_dir=tmp_path, allow_missing_keys=True)
    data = {"pred": pred}
    assert save(data)["pred"] is pred
    assert not list(tmp_path.iterdir())
    with pytest.raises(KeyError, match="image"):
        SaveOverlayPNGd("pred", output_dir=tmp_path)(data)
