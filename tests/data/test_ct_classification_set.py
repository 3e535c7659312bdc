"""The ``ct_classification`` sample set: a crop's location tells nothing about its label, and no held-out crop shares
a voxel with a training crop."""

from __future__ import annotations

import json
from collections import defaultdict

import nibabel as nib
import numpy as np
import pytest

from unimiss_monai.data.sample_sets.ct_classification import (CENTRE_MM, CLASS_NAMES, SYNTHETIC_CROP, build,
                                                           centre_box, load_chest_ct, split_plane)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct_classification")
    entry = build(out, synthetic=True)
    folder = out / entry["path"]
    return entry, folder, json.loads((folder / "datalist.json").read_text())


def _voxel_box(folder, item, reference_affine):
    """``(start, stop)`` voxel range of a crop in the voxel grid of ``reference_affine`` (every crop shares it)."""
    img = nib.load(folder / item["image"])
    start = np.linalg.solve(reference_affine[:3, :3], img.affine[:3, 3] - reference_affine[:3, 3])
    start = np.round(start).astype(int)
    return start, start + np.asarray(img.shape)


def test_every_location_holds_one_crop_of_each_class_that_differ_only_in_the_lesion(built):
    _, folder, datalist = built
    for split in ("training", "validation", "test"):
        by_location = defaultdict(dict)
        for item in datalist[split]:
            by_location[item["image"].rsplit("_", 1)[0]][item["label"]] = item
        assert by_location and all(sorted(v) == sorted(CLASS_NAMES) for v in by_location.values())
        labels = [item["label"] for item in datalist[split]]
        assert all(labels.count(c) == len(labels) // 3 for c in CLASS_NAMES)  # balanced: one per class and location
        sizes = defaultdict(list)  # changed voxels per lesion class
        spacing = None
        for crops in by_location.values():
            images = {c: nib.load(folder / crops[c]["image"]) for c in CLASS_NAMES}
            assert all(np.allclose(images[c].affine, images["normal"].affine) for c in CLASS_NAMES)  # same place
            normal = np.asarray(images["normal"].dataobj)
            spacing = np.linalg.norm(images["normal"].affine[:3, :3], axis=0)
            for lesion in ("nodule", "mass"):
                changed = np.asarray(images[lesion].dataobj) != normal
                assert 0 < changed.mean() < 0.5  # the lesion, and nothing else of the crop, differs
                sizes[lesion].append(changed.sum())
                # the lesion sits at the crop's centre: the centroid of what changed, within the centre box and one
                # voxel (an ellipsoid's centroid is its centre; partial-volume rounding moves it a little)
                offset_mm = (np.argwhere(changed).mean(0) - np.asarray(normal.shape) // 2) * spacing
                assert np.all(np.abs(offset_mm) <= CENTRE_MM + spacing + 1e-6), offset_mm
        assert np.mean(sizes["mass"]) > np.mean(sizes["nodule"])


def test_held_out_crops_share_no_voxel_with_training_crops(built):
    entry, folder, datalist = built
    reference = load_chest_ct(synthetic=True).affine  # the CT the crops were cut from
    boxes = {split: [_voxel_box(folder, item, reference) for item in datalist[split]]
             for split in ("training", "validation", "test")}
    axial = 2  # every crop of the set has the CT's axes; the split plane is axial
    last_training = max(stop[axial] for _, stop in boxes["training"])
    first_held_out = min(start[axial] for split in ("validation", "test") for start, _ in boxes[split])
    assert last_training <= entry["split_slice"] <= first_held_out


def test_split_plane_halves_the_lung_and_leaves_room_for_a_crop_on_each_side():
    lung = np.zeros((8, 8, 40), bool)
    lung[:, :, 10:30] = True
    assert split_plane(lung, 5) == 20
    lung[:, :, 10:30] = False
    lung[:, :, 36:39] = True  # the lung near the last slice: the plane keeps a crop's depth after it
    assert split_plane(lung, 8) == 32
    with pytest.raises(ValueError, match="cannot hold two disjoint crops"):
        split_plane(lung, 21)
    assert SYNTHETIC_CROP[2] * 2 <= 48  # the phantom's slices hold both sides


def test_centre_box_spans_the_reach_in_voxels_of_each_axis():
    box = centre_box((64, 64, 32), (1.4, 1.4, 2.5))
    idx = np.argwhere(box)
    assert idx.min(0).tolist() == [28, 28, 14] and idx.max(0).tolist() == [36, 36, 18]  # +-4, +-4, +-2 voxels
    assert centre_box((5, 5, 5), (10.0, 10.0, 10.0)).sum() == 1  # coarser than the reach: the central voxel
