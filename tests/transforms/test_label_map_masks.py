"""A viewer's one-channel label map as the per-structure masks of the CXR network: values to channels, masks passed
through, overlaps lost as documented, and one-line refusals naming the files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged

from unimiss_monai.transforms import CheckMultiLabelMaskd, LabelMapToMasks, LabelMapToMasksd

STRUCTURES = ["lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right"]


def _later_wins(masks: np.ndarray) -> np.ndarray:
    """(N, X, Y) binary masks -> (1, X, Y) label map where a later structure overwrites an earlier one."""
    label_map = np.zeros(masks.shape[1:], np.float32)
    for i, mask in enumerate(masks):
        label_map[mask > 0] = i + 1
    return label_map[None]


def _kept_masks(masks: np.ndarray) -> np.ndarray:
    """Independent reference of what ``_later_wins(masks)`` keeps of each structure: structure i keeps a pixel unless
    a later structure covers it too."""
    covered_later = np.flip(np.maximum.accumulate(np.flip(masks, 0), 0), 0)
    return masks * (1 - np.concatenate([covered_later[1:], np.zeros_like(masks[:1])]))


def _masks(rng: np.random.Generator, shape=(12, 10)) -> np.ndarray:
    """Five random rectangles, some overlapping: (5, X, Y) float32 in {0, 1}."""
    masks = np.zeros((5,) + shape, np.float32)
    for m in masks:
        x0, y0 = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        m[x0:x0 + rng.integers(2, 6), y0:y0 + rng.integers(2, 6)] = 1
    return masks


@pytest.mark.parametrize("as_numpy", [False, True])
def test_label_map_values_become_channels(as_numpy):
    label_map = np.array([[[0, 1, 2], [5, 3, 4], [2, 0, 5]]], np.float32)  # (1, 3, 3)
    out = LabelMapToMasks(5)(label_map if as_numpy else torch.as_tensor(label_map))
    assert isinstance(out, np.ndarray if as_numpy else torch.Tensor) and out.dtype in (np.float32, torch.float32)
    out = np.asarray(out)
    assert out.shape == (5, 3, 3)
    for value in range(1, 6):  # channel value - 1 is exactly where the map holds value
        np.testing.assert_array_equal(out[value - 1], (label_map[0] == value).astype(np.float32))
    assert out.sum(0).max() == 1 and out.sum() == np.count_nonzero(label_map)


def test_masks_pass_through_and_metadata_is_kept():
    masks = torch.zeros(5, 4, 4)
    assert LabelMapToMasks(5)(masks) is masks
    label_map = MetaTensor(torch.tensor([[[0.0, 3.0], [1.0, 0.0]]]), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])),
                           meta={"filename_or_obj": "map.nii.gz"})
    out = LabelMapToMasks(5)(label_map)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "map.nii.gz"
    torch.testing.assert_close(out.affine, label_map.affine)


def test_overlap_goes_to_the_structure_the_map_kept(tmp_path):
    masks = np.zeros((5, 8, 8), np.float32)
    masks[0, 0:6, 0:6] = 1  # lung_left
    masks[2, 3:8, 3:8] = 1  # heart, overlapping the lung on [3:6, 3:6]
    out = LabelMapToMasks(5)(torch.as_tensor(_later_wins(masks))).numpy()
    np.testing.assert_array_equal(out[2], masks[2])  # the painted-over structure keeps all its pixels
    lost = masks[0] * masks[2]
    np.testing.assert_array_equal(out[0], masks[0] - lost)  # the other one loses exactly the overlap
    assert lost.sum() == 9


def test_round_trip_of_random_masks_equals_later_wins_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        masks = _masks(rng)
        out = LabelMapToMasks(5)(torch.as_tensor(_later_wins(masks))).numpy()
        np.testing.assert_array_equal(out, _kept_masks(masks))


def _item(label, image_shape=(3, 3), label_name="map.nii.gz"):
    return {"image": MetaTensor(torch.rand((1,) + image_shape), meta={"filename_or_obj": "cxr_007.nii.gz"}),
            "label": MetaTensor(torch.as_tensor(label, dtype=torch.float32), meta={"filename_or_obj": label_name})}


@pytest.mark.parametrize("label, pattern", [
    (np.full((1, 3, 3), 6.0), r"^map.nii.gz \(label of cxr_007.nii.gz\): label map values \[6.0\] are outside 0..5 \(0 background, 1..5 the structures: 1 lung_left, .*5 clavicle_right\)"),
    (np.full((1, 3, 3), -1.0), r"^map.nii.gz \(label of cxr_007.nii.gz\): label map values \[-1.0\] are outside 0..5"),
    (np.full((1, 3, 3), 1.5), r"^map.nii.gz \(label of cxr_007.nii.gz\): label map values \[1.5\] are outside 0..5"),
    (np.zeros((3, 3, 3)), r"^map.nii.gz \(label of cxr_007.nii.gz\): label has 3 channels; expected 1 \(a label map, .*\) or 5 \(one binary mask per structure\)"),
    (np.zeros((1, 4, 3)), r"^map.nii.gz: label grid \(4, 3\) differs from the grid \(3, 3\) of its image cxr_007.nii.gz"),
    (np.zeros((5, 3, 2)), r"^map.nii.gz: label grid \(3, 2\) differs from the grid \(3, 3\) of its image "
                          r"cxr_007.nii.gz; save the label on the image's grid$"),
])
def test_refusals_are_one_line_naming_label_and_image(label, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        LabelMapToMasksd("label", structures=STRUCTURES)(_item(label))
    assert "\n" not in str(err.value)


def test_structures_are_required():
    with pytest.raises(ValueError, match="give the structures"):
        LabelMapToMasksd("label", structures=[])


def test_files_as_saved_by_a_viewer_and_as_masks_load_to_the_same_masks(tmp_path):
    """A 2D NIfTI label map (X, Y), the same map with a singleton axis (X, Y, 1) and the (X, Y, 1, 5) masks it was made
    from (overlap removed) all load, through the bundle's label transforms, to one (5, X, Y) tensor."""
    rng = np.random.default_rng(1)
    masks = _masks(rng)
    label_map = _later_wins(masks)[0]
    expected = _kept_masks(masks)  # the masks less what later structures paint over
    assert (expected != masks).any()  # the overlap is removed, so the masks file is not the input masks
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    files = {
        "map2d": nib.Nifti1Image(label_map.astype(np.uint8), affine),
        "map3d": nib.Nifti1Image(label_map[..., None].astype(np.uint8), affine),
        "masks": nib.Nifti1Image(np.moveaxis(expected, 0, -1)[:, :, None].astype(np.uint8), affine),
    }
    nib.save(nib.Nifti1Image(rng.random(label_map.shape).astype(np.float32), affine), str(tmp_path / "image.nii.gz"))
    load = LoadImaged(["image", "label"], image_only=True, ensure_channel_first=True, dtype=np.float32)
    convert = LabelMapToMasksd("label", structures=STRUCTURES)
    check = CheckMultiLabelMaskd("label", structures=STRUCTURES)
    for name, img in files.items():
        nib.save(img, str(tmp_path / f"{name}.nii.gz"))
        item = check(convert(load({"image": str(tmp_path / "image.nii.gz"), "label": str(tmp_path / f"{name}.nii.gz")})))
        np.testing.assert_array_equal(np.asarray(item["label"]), expected, err_msg=name)


def test_an_eight_bit_mask_image_is_refused_naming_its_file_and_the_fix(tmp_path):
    """A one-structure mask saved as 0/255 reads as a one-channel label map and as one mask alike; it passes the
    conversion unchanged and the mask check refuses it, naming the file (it would score against 255)."""
    mask = np.zeros((12, 10), np.uint8)
    mask[3:7, 2:6] = 255
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(tmp_path / "lung.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((12, 10), np.float32), np.eye(4)), str(tmp_path / "image.nii.gz"))
    load = LoadImaged(["image", "label"], image_only=True, ensure_channel_first=True, dtype=np.float32)
    item = LabelMapToMasksd("label", structures=["lung"])(load({"image": str(tmp_path / "image.nii.gz"),
                                                               "label": str(tmp_path / "lung.nii.gz")}))
    with pytest.raises(ValueError, match=r"lung\.nii\.gz: label values \[255\.0\] .*0/255: save it as 0/1"):
        CheckMultiLabelMaskd("label", structures=["lung"])(item)


def test_a_transposed_label_is_said_to_look_transposed():
    """A 230 x 244 mask saved transposed was told only to be saved on the image's grid."""
    with pytest.raises(ValueError, match=r"^map.nii.gz: label grid \(4, 3\) differs from the grid \(3, 4\) of its "
                                         r"image cxr_007.nii.gz; it looks transposed \(its rows are the image's "
                                         r"columns\): save it transposed back$"):
        LabelMapToMasksd("label", structures=STRUCTURES)(_item(np.zeros((1, 4, 3)), image_shape=(3, 4)))


def test_a_mask_of_both_lungs_read_as_lung_left_is_warned_of_once(caplog):
    """The usual public lung masks are 0/1 masks of both lungs: read by value, value 1 trained lung_left on both."""
    import logging

    both = np.zeros((1, 40, 30))
    both[0, 4:16, 5:25] = 1  # a lung either side of the middle (the first axis runs across the image)
    both[0, 24:36, 5:25] = 1
    one = np.zeros((1, 40, 30))
    one[0, 24:36, 5:25] = 1  # a left lung alone: one side
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.transforms.labels.label_map"):
        LabelMapToMasksd("label", structures=STRUCTURES)(_item(one, image_shape=(40, 30), label_name="one.png"))
        for _ in range(3):  # epochs in one process: said once
            LabelMapToMasksd("label", structures=STRUCTURES)(_item(both, image_shape=(40, 30), label_name="both.png"))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("both.png: its value 1 (lung_left) covers both sides of the image "
                                                 "(50% and 50% of it either side of the middle)")
    assert "give each structure its own value (0 background, 1..5 the structures: 1 lung_left" in said[0]
