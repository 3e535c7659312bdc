"""DRRProject / DRRProjectd / RandDRRProject(d)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from unimiss_monai import drr
from unimiss_monai.transforms import DRRProject, DRRProjectd, RandDRRProject, RandDRRProjectd

KW = dict(detector_shape=(8, 6), pixel_spacing=(2.0, 3.0), sdd=300.0, sid=200.0)


def _ct():
    rng = np.random.default_rng(0)
    affine = torch.diag(torch.tensor([1.1, 0.9, 1.5, 1.0], dtype=torch.float64))
    return MetaTensor(torch.tensor(rng.uniform(-1000, 1000, (1, 7, 6, 5)), dtype=torch.float32), affine=affine)


def test_array_is_render_transposed_and_carries_spacing():
    ct = _ct()
    out = DRRProject(views=("AP", "LL"), **KW)(ct)
    # (V, X, Y): detector columns first, as LoadImage returns a PNG
    assert out.shape == (2, 6, 8)
    torch.testing.assert_close(out.as_tensor(), drr.render(ct[0].numpy(), ct.affine, views=("AP", "LL"), **KW).transpose(1, 2))
    np.testing.assert_allclose(out.affine.diagonal()[:2].numpy(), [3.0, 2.0])
    # the C-arm turns about the volume centre, as render() does
    row_first = drr.detector_affine("AP", KW["detector_shape"], KW["pixel_spacing"], KW["sdd"], KW["sid"],
                                    isocenter=drr.volume_center(ct.shape[1:], ct.affine.numpy()))
    np.testing.assert_allclose(out.meta["drr_detector_affine"].numpy(), row_first[:, [1, 0, 2, 3]])
    assert DRRProject(**KW)(ct).shape == (1, 6, 8)


def test_output_matches_the_png_of_the_same_drr_loaded_by_monai(tmp_path):
    from monai.transforms import LoadImage

    from unimiss_monai.data.writers import save_png

    ct = _ct()
    image = drr.render(ct[0].numpy(), ct.affine, views=("AP",), **KW)[0].numpy()  # (H, W), rows top to bottom
    window = (float(image.min()), float(image.max()))
    save_png(drr.to_radiograph(image, window=window), tmp_path / "drr.png")
    loaded = LoadImage(image_only=True, ensure_channel_first=True)(str(tmp_path / "drr.png"))
    out = RandDRRProjectd(keys="image", output_keys="drr", views=("AP",), **KW)({"image": ct})["drr"]
    assert loaded.shape == out.shape == (1, 6, 8)
    np.testing.assert_array_equal(loaded[0].numpy(), drr.to_radiograph(out[0].numpy(), window=window))


def test_dict_matches_array():
    ct = _ct()
    arr = DRRProject(views=("PA",), **KW)(ct)
    d = DRRProjectd(keys="image", output_keys="drr", views=("PA",), **KW)({"image": ct})
    torch.testing.assert_close(d["drr"].as_tensor(), arr.as_tensor())
    assert d["image"] is ct


def test_rand_pose_jitter_is_seeded_and_zero_range_is_identity():
    ct = _ct()
    still = RandDRRProject(views=("AP",), **KW)(ct)
    torch.testing.assert_close(still.as_tensor(), DRRProject(views=("AP",), **KW)(ct).as_tensor())
    jitter = dict(views=("AP",), rotation_range=(0, 0, 20), translation_range=5.0, **KW)
    a = RandDRRProjectd(keys="image", **jitter).set_random_state(7)({"image": ct})["image"]
    b = RandDRRProjectd(keys="image", **jitter).set_random_state(7)({"image": ct})["image"]
    torch.testing.assert_close(a.as_tensor(), b.as_tensor())
    assert not torch.allclose(a.as_tensor(), still.as_tensor())


def test_needs_channel_first_ct_with_affine():
    with pytest.raises(ValueError, match=r"\(1, X, Y, Z\)"):
        DRRProject(**KW)(MetaTensor(torch.zeros(2, 4, 4, 4)))
    with pytest.raises(ValueError, match="affine"):
        DRRProject(**KW)(torch.zeros(1, 4, 4, 4))


def test_metatensor_affine_is_read_in_the_space_its_metadata_names():
    # MONAI's ITK reader with affine_lps_to_ras=False keeps the DICOM affine and says so in meta["space"]: read as
    # RAS, the DRR came out mirrored left-right and front-back
    ct = _ct()
    ct[0, :2] += 2000.0  # dense voxels on one side, so that a mirrored view differs
    lps_affine = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64)) @ ct.affine  # same grid, LPS
    lps = MetaTensor(ct.as_tensor(), affine=lps_affine, meta={"space": "LPS", "filename_or_obj": "ct.dcm"})
    want = drr.render(ct[0].numpy(), lps_affine, views=("AP",), affine_space="LPS", **KW).transpose(1, 2)
    assert not torch.allclose(want, drr.render(ct[0].numpy(), lps_affine, views=("AP",), **KW).transpose(1, 2))
    out = DRRProject(views=("AP",), **KW)(lps)
    torch.testing.assert_close(out.as_tensor(), want)
    torch.testing.assert_close(DRRProject(views=("AP",), affine_space="LPS", **KW)(lps).as_tensor(), want)
    # the detector placement is that of the RAS+ world the renderer used
    row_first = drr.detector_affine("AP", KW["detector_shape"], KW["pixel_spacing"], KW["sdd"], KW["sid"],
                                    isocenter=drr.volume_center(ct.shape[1:], ct.affine.numpy()))
    np.testing.assert_allclose(out.meta["drr_detector_affine"].numpy(), row_first[:, [1, 0, 2, 3]])
    assert out.meta["filename_or_obj"] == "ct.dcm"
    # the functional API reads a MetaTensor volume the same way
    torch.testing.assert_close(drr.render(lps[0], None, views=("AP",), **KW).transpose(1, 2), want)
    labels = MetaTensor((ct[0] > 500).long(), affine=lps_affine, meta={"space": "LPS"})
    torch.testing.assert_close(drr.project_labels(labels, views=("AP",), **KW),
                               drr.project_labels(labels.numpy(), lps_affine, views=("AP",), affine_space="LPS", **KW))
