"""A 2D image given as a radiograph is one: a mask, a label map or a CT slice in HU is refused, and so is a pixel
size in another unit than mm; a 2D NIfTI label lies where its image lies. Each refusal is one line naming the file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, LoadImaged

from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.transforms import AsGreyRadiograph, CheckMultiLabelMaskd, LabelMapToMasksd

STRUCTURES = ["lung_left", "lung_right"]


def _radiograph(seed: int = 0, shape=(48, 40)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.linspace(40, 200, shape[0])[:, None] + rng.normal(0, 5, shape)).clip(0, 255).astype(np.float32)


def _image(array, name: str, affine=None) -> MetaTensor:
    return MetaTensor(torch.as_tensor(np.asarray(array, np.float32))[None],
                      affine=torch.eye(4, dtype=torch.float64) if affine is None else torch.as_tensor(affine),
                      meta={"filename_or_obj": name})


def _label_map() -> np.ndarray:
    label = np.zeros((48, 40), np.float32)
    label[5:20, 5:35], label[25:45, 5:35] = 1, 2
    return label


@pytest.mark.parametrize("values", [_label_map(), (_label_map() > 0) * 255.0, (_label_map() > 0) * 1.0])
def test_a_mask_or_label_map_is_no_radiograph(values):
    with pytest.raises(ValueError, match=r"^/d/mask\.png: holds only [23] distinct values .* a mask or label map, "
                                         r"not a radiograph.*; pass the radiograph itself"):
        AsGreyRadiograph()(_image(values, "/d/mask.png"))


def test_grey_levels_of_real_exposures_pass():
    # nine levels, one more than a label map of eight structures holds: a coarsely quantised exposure
    nine = np.round((_radiograph() - _radiograph().min()) / np.ptp(_radiograph()) * 8)
    assert len(np.unique(nine)) == 9
    for array in (nine, _radiograph(), np.round(_radiograph() / 8) * 8):
        assert AsGreyRadiograph()(_image(array, "/d/film.png")).shape == (1, 48, 40)
    # a thumbnail of a few pixels (taken only with a smaller min_size) cannot show many grey levels: not counted
    assert AsGreyRadiograph(min_size=2)(_image([[0.0, 1.0], [1.0, 0.0]], "/d/tiny.png")).shape == (1, 2, 2)


def test_a_ct_slice_in_hu_is_no_radiograph(tmp_path):
    hu = make_ct_phantom((40, 36, 12), (8.0, 8.0, 8.0), seed=0, noise_hu=0).hu[:, :, 6].astype(np.float32)
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([8.0, 8.0, 8.0, 1.0])), path)
    image = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)(str(path))
    with pytest.raises(ValueError, match=rf"^{path}: looks like a CT slice in HU \(\d+% of its pixels near -1000"):
        AsGreyRadiograph()(image)
    # negative values without air (an image normalised to zero mean) are not taken for HU
    normalised = (_radiograph() - _radiograph().mean()) / _radiograph().std()
    assert AsGreyRadiograph()(_image(normalised, "/d/zero_mean.nii.gz")).shape == (1, 48, 40)


def _save_2d(path, array: np.ndarray, size: float) -> None:
    """``array`` (X, Y) saved as a 2D image of ``size`` mm pixels: NIfTI by nibabel, MetaImage and NRRD by ITK."""
    if str(path).endswith(".nii.gz"):
        nib.save(nib.Nifti1Image(array, np.diag([size, size, 1.0, 1.0])), path)
        return
    import itk

    image = itk.image_from_array(np.ascontiguousarray(array.T))  # ITK's array is (Y, X)
    image.SetSpacing([size, size])
    itk.imwrite(image, str(path))


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
@pytest.mark.parametrize("size", [1e4, 1.5e-4, 150.0])
def test_a_pixel_size_in_another_unit_is_refused(tmp_path, size, suffix):
    # MetaImage and NRRD record their spacing as NIfTI does: theirs is judged too
    path = tmp_path / f"film{suffix}"
    _save_2d(path, _radiograph(), size)
    image = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)(str(path))
    with pytest.raises(ValueError, match=rf"^{path}: pixel size \[.*\] mm is not a radiograph's "
                                         r"\(0\.01-50\.0 mm.*: rewrite it with the spacing in mm$"):
        AsGreyRadiograph()(image)


@pytest.mark.parametrize("size", [0.01, 0.15, 1.0, 6.25, 20.0, 50.0])
def test_detector_and_drr_pixel_sizes_pass(size):
    affine = np.diag([size, size, 1.0, 1.0])
    assert AsGreyRadiograph()(_image(_radiograph(), "/d/drr.nii.gz", affine)).shape == (1, 48, 40)
    # a PNG carries no spacing: whatever its reader made up is not judged
    assert AsGreyRadiograph()(_image(_radiograph(), "/d/film.png", np.diag([1e4, 1e4, 1.0, 1.0]))) is not None


def _pair(tmp_path, shift=(0.0, 0.0, 0.0), image_suffix=".nii.gz", label_suffix=".nii.gz") -> dict:
    """An image and its label map, both NIfTI (7 mm pixels, an oblique detector plane), the label shifted by
    ``shift`` mm, loaded as the CXR bundles load them."""
    affine = np.array([[-7.0, 0, 0, 218.8], [0, 0, -1.0, -39.9], [0, -7.0, 0, 187.1], [0, 0, 0, 1]])
    moved = affine.copy()
    moved[:3, 3] += shift
    files = {}
    for key, array, grid, suffix in (("image", _radiograph(), affine, image_suffix),
                                     ("label", _label_map(), moved, label_suffix)):
        files[key] = str(tmp_path / f"{key}{suffix}")
        if suffix == ".png":
            from PIL import Image

            Image.fromarray(array.T.astype(np.uint8)).save(files[key])
        else:
            nib.save(nib.Nifti1Image(array, grid), files[key])
    loaded = LoadImaged(["image", "label"], image_only=True, ensure_channel_first=True, dtype=np.float32)(files)
    return {**loaded, "image": AsGreyRadiograph()(loaded["image"])}


@pytest.mark.parametrize("shift", [(500.0, 0.0, 0.0), (0.0, 0.0, -3.5), (0.0, 0.1, 0.0)])
def test_a_label_elsewhere_in_space_is_refused(tmp_path, shift):
    data = _pair(tmp_path, shift)
    image, label = data["image"].meta["filename_or_obj"], data["label"].meta["filename_or_obj"]
    pattern = (rf"^{label}: label affine differs from the affine of its image {image} \(label: pixel size .* origin "
               r".*; image: .*\), so its masks lie elsewhere on the body; save the label with the image's affine, or "
               r"resample it onto the image$")
    with pytest.raises(ValueError, match=pattern):
        LabelMapToMasksd("label", structures=STRUCTURES)(data)
    masks = dict(data, label=torch.stack([data["label"][0] == 1, data["label"][0] == 2]).float())
    masks["label"] = MetaTensor(masks["label"], meta=dict(data["label"].meta))
    with pytest.raises(ValueError, match=pattern):
        CheckMultiLabelMaskd("label", structures=STRUCTURES)(masks)


def test_a_label_on_its_image_grid_passes(tmp_path):
    # float32 headers of one grid written twice differ in their last digits: one grid still
    out = LabelMapToMasksd("label", structures=STRUCTURES)(_pair(tmp_path, (1e-5, 0.0, 0.0)))
    out = CheckMultiLabelMaskd("label", structures=STRUCTURES)(out)
    assert out["label"].shape == (2, 48, 40)


@pytest.mark.parametrize("suffixes", [(".png", ".png"), (".nii.gz", ".png"), (".png", ".nii.gz")])
def test_a_label_without_a_place_of_its_own_passes_on_its_shape(tmp_path, suffixes):
    # a PNG has no affine, only the identity its reader makes up: its shape is all there is to compare
    data = _pair(tmp_path, (500.0, 0.0, 0.0), *suffixes)
    out = CheckMultiLabelMaskd("label", structures=STRUCTURES)(LabelMapToMasksd("label", structures=STRUCTURES)(data))
    assert out["label"].shape == (2, 48, 40)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_a_metaimage_or_nrrd_label_elsewhere_in_space_is_refused(tmp_path, suffix):
    # their headers place them in space as NIfTI's do: a label 500 mm from its image lies elsewhere on the body
    import itk

    from unimiss_monai.data.radiograph_checks import check_label_on_radiograph

    loaded = {}
    for key, array, origin in (("image", _radiograph(), (0.0, 0.0)), ("label", _label_map(), (500.0, 0.0)),
                               ("same", _label_map(), (0.0, 0.0))):
        image = itk.image_from_array(np.ascontiguousarray(array.T))
        image.SetSpacing([0.5, 0.5])
        image.SetOrigin(origin)
        itk.imwrite(image, str(tmp_path / f"{key}{suffix}"))
        loaded[key] = LoadImage(image_only=True, ensure_channel_first=True)(str(tmp_path / f"{key}{suffix}"))
    image, label = str(tmp_path / f"image{suffix}"), str(tmp_path / f"label{suffix}")
    with pytest.raises(ValueError, match=rf"^{label}: .*{image}"):
        check_label_on_radiograph(loaded["label"], loaded["image"], label, image)
    check_label_on_radiograph(loaded["same"], loaded["image"], str(tmp_path / f"same{suffix}"), image)
