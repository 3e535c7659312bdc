"""Label-map transforms: TotalSegmentator structures to compact classes, and the segmentation input contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import MapLabelValued

from unimiss_monai.data.totalsegmentator import map_label_value_args, structure_lookup
from unimiss_monai.transforms import CheckSegmentationInputd, SelectStructures, SelectStructuresd

STRUCTURES = {"spleen": 1, "kidney_right": 2, "liver": 5, "lung_upper_lobe_left": 10, "lung_lower_lobe_left": 11, "heart": 51}


@pytest.mark.parametrize("as_numpy", [False, True])
def test_select_structures_matches_map_label_value(as_numpy):
    table, _ = structure_lookup({"liver": ["liver"], "lung": ["lung_upper_lobe_left", "lung_lower_lobe_left"]}, STRUCTURES)
    raw = torch.tensor([[[0, 1, 5], [10, 11, 51]]], dtype=torch.int16)
    expected = torch.tensor([[[0, 0, 1], [2, 2, 0]]])
    x = raw.numpy() if as_numpy else raw
    out = SelectStructures(table, max_value=60)(x)
    assert np.array_equal(np.asarray(out), expected.numpy()) and type(out) is type(x)
    # the same mapping through MONAI's MapLabelValued
    args = map_label_value_args(table, STRUCTURES)
    mapped = MapLabelValued("label", **args)({"label": raw.numpy()})["label"]
    assert np.array_equal(np.asarray(mapped), expected.numpy())
    d = SelectStructuresd("label", table)({"label": MetaTensor(raw.clone())})
    assert isinstance(d["label"], MetaTensor) and torch.equal(d["label"].long(), expected)
    with pytest.raises(ValueError, match=r"outside 0..60"):
        SelectStructures(table, max_value=60)(torch.tensor([[70]]))


def _pair(shape=(8, 8, 6), label_shape=None, values=(0, 1, 2), channels=1, label_affine=None):
    meta = {"filename_or_obj": "/data/ct.nii.gz"}
    # a CT-like image: air with a soft-tissue ramp (a constant image is refused before the label checks)
    image = torch.full((channels, *shape), -1000.0)
    image[:, : shape[0] // 2] = torch.linspace(0.0, 60.0, shape[-1])
    image = MetaTensor(image, affine=torch.eye(4), meta=meta)
    label = torch.zeros(1, *(label_shape or shape))
    label.view(-1)[: len(values)] = torch.tensor(values, dtype=torch.float32)
    label = MetaTensor(label, affine=torch.eye(4) if label_affine is None else label_affine, meta={"filename_or_obj": "/data/ct_label.nii.gz"})
    return {"image": image, "label": label}


def test_check_input_accepts_valid_and_inference_items():
    check = CheckSegmentationInputd(("image", "label"), spatial_dims=3, in_channels=1, num_classes=3)
    item = _pair()
    out = check(item)  # a check: the item passes through untouched
    assert out.keys() == item.keys() and all(out[k] is item[k] for k in item)
    assert "label" not in check({"image": _pair()["image"]})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"shape": (8, 8)}, r"ct.nii.gz: a 2D image \(channel-first shape \(1, 8, 8\)\) but this bundle segments 3D "
                            r"volumes; give it a 3D image$"),
        ({"channels": 2}, r"ct.nii.gz: image has 2 channels, the network takes 1"),
        ({"values": (0, 1, 7)}, r"ct_label.nii.gz: label values \[7.0\] are outside the declared classes 0..2; .* "
                                 r"one name per class in class_names, which sets num_classes\)$"),
        ({"values": (0, 1.5)}, r"label values \[1.5\] are not whole numbers, .* nearest-neighbour interpolation$"),
        ({"label_shape": (8, 8, 5)}, r"label grid \(8, 8, 5\) differs from image grid \(8, 8, 6\)"),
        ({"label_affine": torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0]))}, r"label affine differs from the image affine"),
    ],
    ids=["2d-image", "channels", "label-range", "label-fraction", "grid-shape", "grid-affine"],
)
def test_check_input_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CheckSegmentationInputd(("image", "label"), spatial_dims=3, in_channels=1, num_classes=3)(_pair(**kwargs))


@pytest.mark.parametrize("turn", ["flipped", "transposed"])
def test_a_label_of_the_same_grid_in_another_axis_order_is_told_to_reorient(turn):
    """A label saved in RAS beside its LAS image was told the two are on different grids, to resample: the voxels are
    the same, and reorienting loses nothing where resampling interpolates."""
    item = _pair(values=(0, 1, 2, 1))
    label = item["label"]
    if turn == "flipped":  # x reversed: the last voxel of the image's x axis is the label's first
        affine = torch.tensor([[-1.0, 0, 0, 7], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
        data = label.flip(1)
    else:  # x and y swapped, the affine's columns with them
        affine = torch.tensor([[0.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
        data = label.transpose(1, 2)
    item["label"] = MetaTensor(data.as_tensor(), affine=affine, meta={"filename_or_obj": "/data/ct_label.nii.gz"})
    with pytest.raises(ValueError, match=r"^/data/ct_label.nii.gz: label holds the voxels of its image's grid "
                                         r"\(/data/ct.nii.gz\) in another axis order or direction; reorient it"):
        CheckSegmentationInputd(("image", "label"), spatial_dims=3, in_channels=1, num_classes=3)(item)
    # the same axis order shifted a little: another grid, to be resampled, not reoriented
    shifted = torch.eye(4, dtype=torch.float64)
    shifted[0, 3] = 0.01
    item["label"] = MetaTensor(label.as_tensor(), affine=shifted, meta={"filename_or_obj": "/data/ct_label.nii.gz"})
    with pytest.raises(ValueError, match=r"label affine differs from the image affine .* resample the label"):
        CheckSegmentationInputd(("image", "label"), spatial_dims=3, in_channels=1, num_classes=3)(item)
