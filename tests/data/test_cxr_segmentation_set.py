"""The ``cxr_segmentation`` sample set: images of each split come from anatomies of their own (body habitus and heart
size), so training and test differ in more than pose."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unimiss_monai.data.sample_sets import cxr_segmentation as cxr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("cxr_segmentation")
    entry = cxr.build(out, synthetic=True)
    folder = out / entry["path"]
    return folder, json.loads((folder / "datalist.json").read_text()), json.loads((folder / "poses.json").read_text())


def test_scale_about_centre_keeps_the_centre_and_scales_world_distances():
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    affine[:3, :3] = np.diag([0.7, 0.8, 2.5]) @ np.linalg.qr(rng.normal(size=(3, 3)))[0]
    affine[:3, 3] = [-120.0, 40.0, 300.0]
    shape, scale = (50, 60, 20), (1.1, 0.9, 1.05)
    out = cxr.scale_about_centre(affine, shape, scale)
    centre = (np.asarray(shape) - 1) / 2
    world = lambda a, v: a[:3, :3] @ v + a[:3, 3]  # noqa: E731
    np.testing.assert_allclose(world(out, centre), world(affine, centre), atol=1e-9)
    # any voxel's offset from the centre is the original offset, scaled along each world axis
    for voxel in ([0, 0, 0], [49, 3, 19], [7, 59, 0]):
        offset = world(affine, np.asarray(voxel, float)) - world(affine, centre)
        np.testing.assert_allclose(world(out, np.asarray(voxel, float)) - world(out, centre), np.asarray(scale) * offset, atol=1e-9)


def test_anatomy_variant_enlarges_the_heart_into_the_lungs_and_scales_the_body():
    ct = cxr._synthetic_ct()
    heart, lungs = cxr.STRUCTURES.index("heart"), [cxr.STRUCTURES.index(s) for s in ("lung_left", "lung_right")]
    before = {"hu": ct["hu"].copy(), "groups": [g.copy() for g in ct["groups"]], "affine": ct["affine"].copy()}
    hu, affine, groups, params = cxr.anatomy_variant(ct, np.random.default_rng(1))
    assert params["heart_scale"] > 1.0
    grown = (groups[heart] > 0) & ~(ct["groups"][heart] > 0)
    assert grown.sum() > 0.05 * ct["groups"][heart].sum()  # the heart is larger ...
    for i in lungs:  # ... and the lungs gave up exactly the voxels it took from them
        assert not ((groups[i] > 0) & (groups[heart] > 0)).any()
        np.testing.assert_array_equal(groups[i] > 0, (ct["groups"][i] > 0) & ~(groups[heart] > 0))
    assert not np.array_equal(hu, ct["hu"])  # the heart was resampled in a copy; the source CT is left as it was
    np.testing.assert_array_equal(ct["hu"], before["hu"])
    np.testing.assert_array_equal(ct["affine"], before["affine"])
    assert all(np.array_equal(a, b) for a, b in zip(ct["groups"], before["groups"]))
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=1) / np.linalg.norm(ct["affine"][:3, :3], axis=1),
                               params["body_scale"], rtol=1e-9)  # world rows of the affine carry the body scale
    for (lo, hi), s in zip(cxr.BODY_SCALE, params["body_scale"]):
        assert lo <= s <= hi


def test_every_split_has_its_own_anatomies(built):
    _, datalist, poses = built
    ids = {split: {poses[f"{split}_{i:03d}"]["anatomy"]["id"] for i in range(len(datalist[split]))}
           for split in ("training", "validation", "test")}
    assert {split: len(v) for split, v in ids.items()} == cxr.SYNTHETIC["anatomies"]
    assert not (ids["training"] & ids["test"]) and not (ids["training"] & ids["validation"])
    anatomies = {p["anatomy"]["id"]: (tuple(p["anatomy"]["body_scale"]), p["anatomy"]["heart_scale"]) for p in poses.values()}
    assert len(set(anatomies.values())) == len(anatomies)  # no two anatomies alike
