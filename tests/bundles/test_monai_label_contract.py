"""What MONAI Label 0.8.5's bundle tasks (``monailabel.tasks.infer.bundle.BundleInferTask`` and
``monailabel.tasks.train.bundle.BundleTrainTask``) read from the segmentation bundles, checked without MONAI Label.

Inference: MONAI Label parses ``configs/inference.json`` with ``bundle_root`` set to the bundle folder, instantiates
``network_def`` and loads ``models/model.pt`` (state under ``"model"``), runs the transforms of ``pre_transforms``
(read after ``preprocessing``, so it wins) one by one (``LoadImaged`` with ``image_only=False``) on a dictionary that
also holds ``image_path``, the ``inferer`` on a batch of one, then the transforms of ``post_transforms`` (read after
``postprocessing``) without ``SaveImaged``, and writes ``pred`` with the extension of ``image_path``. The label
must come back as one integer map on the input's grid. Training: it overrides ``bundle_root``, ``device``,
``train#trainer#max_epochs``, ``train#dataset#data``, ``validate#dataset#data`` and ``train#handlers`` (adding a
``CheckpointLoader`` of ``@network``) in ``configs/train.json``, and expects the best model in ``models/model.pt``.
The bundles keep the best model of a run under ``output_dir`` while it trains (a ``CheckpointSaver``) and publish it to
``models/model.pt`` when the run finishes. The labels ``/train`` hands over are those a viewer saved: for the CXR bundle
one-channel label maps, which its training takes beside the 5-channel masks of the sample set.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.handlers import CheckpointSaver

from unimiss_monai.handlers import PublishBestModel
from unimiss_monai.networks import tiny_overrides
from monai.transforms import Compose, LoadImaged, SaveImaged

from bundle_runner import BUNDLES

SEGMENTATION_BUNDLES = ["unimiss_cxr_segmentation", "unimiss_ct_segmentation"]
# the tiny network of the bundles' smoke overlays, so a forward pass takes well under a second
TINY_NET = {f"network_def#{key}": list(value) for key, value in tiny_overrides("mitplus").items()}
SMALL_INPUT = {"unimiss_cxr_segmentation": {"spatial_size": [64, 64]}, "unimiss_ct_segmentation": {"roi_size": [16, 32, 32], "pixdim": [10.0, 10.0, 10.0]}}


def _parser(bundle: str, config: str, **overrides) -> ConfigParser:
    """The bundle config as MONAI Label loads it: ``bundle_root`` set to the bundle folder."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / config))
    parser.config.update({"bundle_root": str(BUNDLES / bundle)})
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _metadata(bundle: str) -> dict:
    return json.loads((BUNDLES / bundle / "configs" / "metadata.json").read_text())


def _write_case(bundle: str, folder, rng: np.random.Generator) -> tuple[str, str, tuple[int, ...]]:
    """One synthetic image + label in the bundle's file layout; returns their paths and the image's spatial shape."""
    if bundle == "unimiss_cxr_segmentation":
        shape = (80, 96)
        image = rng.normal(100.0, 20.0, shape).astype(np.float32)
        label = np.zeros(shape + (1, 5), np.uint8)
        label[10:40, 20:70, 0, 0] = label[45:75, 20:70, 0, 1] = label[30:60, 30:60, 0, 2] = 1
        affine = np.diag([1.75, 1.75, 1.0, 1.0])
    else:
        shape = (40, 36, 12)
        image = rng.integers(-1000, 1000, shape).astype(np.int16)
        label = np.zeros(shape, np.uint8)
        label[5:20, 5:20, 2:8], label[22:35, 10:30, 4:10] = 1, 8
        affine = np.diag([3.0, 3.0, 5.0, 1.0])
    paths = str(folder / "image.nii.gz"), str(folder / "label.nii.gz")
    nib.save(nib.Nifti1Image(image, affine), paths[0])
    nib.save(nib.Nifti1Image(label, affine), paths[1])
    return paths[0], paths[1], shape


@pytest.mark.parametrize("bundle", SEGMENTATION_BUNDLES)
def test_bundle_is_typed_as_segmentation_with_image_and_pred(bundle):
    # MONAI Label types a bundle by its folder name and takes the first input/output of network_data_format as the
    # image and prediction keys; the dimension it reports is the length of the input's spatial_shape
    assert "segmentation" in bundle
    data_format = _metadata(bundle)["network_data_format"]
    assert next(iter(data_format["inputs"])) == "image" and next(iter(data_format["outputs"])) == "pred"
    spatial_dims = _parser(bundle, "inference.json")["network_def"]["spatial_dims"]
    assert len(data_format["inputs"]["image"]["spatial_shape"]) == spatial_dims


@pytest.mark.parametrize("bundle", SEGMENTATION_BUNDLES)
def test_infer_pipeline_returns_label_map_on_input_grid(bundle, tmp_path):
    parser = _parser(bundle, "inference.json", device="cpu", **TINY_NET, **SMALL_INPUT[bundle])
    image_path, _, shape = _write_case(bundle, tmp_path, np.random.default_rng(0))
    network = parser.get_parsed_content("network_def", instantiate=True).eval()

    # the later of preprocessing / pre_transforms wins, as for the post transforms
    pre = parser.get_parsed_content("pre_transforms" if "pre_transforms" in parser else "preprocessing")
    assert isinstance(pre, Compose)
    for transform in pre.transforms:
        if isinstance(transform, LoadImaged):
            transform._loader.image_only = False
    # MONAI Label's request carries the input path as "image_path" too, which the label writer needs at the end
    data = {"image": image_path, "image_path": image_path}
    for transform in pre.transforms:
        data = transform(data)

    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]

    # post_transforms is read after postprocessing, so it is what MONAI Label runs; it must be a Compose it can list
    post = parser.get_parsed_content("post_transforms")
    assert isinstance(post, Compose) and not any(isinstance(t, SaveImaged) for t in post.transforms)
    before = {"pred": data["pred"].clone(), "image": data["image"]}
    for transform in post.transforms:
        data = transform(data)
    if bundle == "unimiss_ct_segmentation":  # a clinician sees in MONAI Label the label map the bundle writes
        from unimiss_monai.handlers import SegmentationWriter

        written = SegmentationWriter(tmp_path / "written", pre).write_item(before)
        assert np.array_equal(np.asarray(nib.load(written).dataobj), torch.as_tensor(data["pred"])[0].numpy())

    assert data["image_path"] == image_path
    label = torch.as_tensor(data["pred"])
    num_labels = len(_metadata(bundle)["network_data_format"]["outputs"]["pred"]["channel_def"])
    # 2D: (X, Y) as written; 3D: (1, X, Y, Z), whose channel MONAI Label's Restored drops
    assert tuple(label.shape[-len(shape):]) == shape and label.numel() == int(np.prod(shape))
    assert torch.equal(label, label.round()) and 0 <= label.min() and label.max() <= num_labels


def test_cxr_channels_follow_structures_order():
    # tools/monai_label.sh serves the CXR bundle as a label map whose value i + 1 is channel i: that renumbering is
    # right only if channel i is structures[i]
    channel_def = _metadata("unimiss_cxr_segmentation")["network_data_format"]["outputs"]["pred"]["channel_def"]
    structures = _parser("unimiss_cxr_segmentation", "inference.json")["structures"]
    assert {int(k): v for k, v in channel_def.items()} == dict(enumerate(structures))


def test_ct_label_numbers_match_monai_label_names():
    channel_def = _metadata("unimiss_ct_segmentation")["network_data_format"]["outputs"]["pred"]["channel_def"]
    class_names = _parser("unimiss_ct_segmentation", "inference.json")["class_names"]
    assert channel_def["0"] == "background"
    assert {int(k): v for k, v in channel_def.items() if v != "background"} == {i + 1: c for i, c in enumerate(class_names)}


@pytest.mark.parametrize("bundle", SEGMENTATION_BUNDLES)
def test_train_overrides_resolve_and_best_model_goes_to_models(bundle, tmp_path):
    image_path, label_path, shape = _write_case(bundle, tmp_path, np.random.default_rng(1))
    datalist = [{"image": image_path, "label": label_path}]
    parser = _parser(bundle, "train.json")
    handlers = parser.get("train#handlers")
    assert isinstance(handlers, list)
    handlers.insert(0, {"_target_": "CheckpointLoader", "load_path": str(tmp_path / "model.pt"), "load_dict": {"model": "$@network"}, "strict": False})
    overrides = {
        "device": "cpu", "train#trainer#max_epochs": 1, "train#dataset#data": datalist, "validate#dataset#data": datalist,
        "train#handlers": handlers, "num_workers": 0, "pretrained_path": None, **TINY_NET, **SMALL_INPUT[bundle],
        # MONAI Label trains a copy of the bundle in its app folder; here the logs go to tmp, not into bundles/
        "output_dir": str(tmp_path / "eval"),
    }
    for key, value in overrides.items():
        parser[key] = value
    parser.parse()

    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.state.max_epochs == 1 and trainer.data_loader.dataset.data == datalist
    assert parser.get_parsed_content("validate#dataset").data == datalist
    # the overridden data go through the bundle's own transforms (absolute paths, no base_dir needed)
    item = parser.get_parsed_content("validate#dataset")[0]
    assert item["image"].shape[0] == parser.get_parsed_content("network_def#in_channels") and item["label"].ndim == item["image"].ndim
    savers = [h for h in parser.get_parsed_content("validate#handlers") if isinstance(h, CheckpointSaver)]
    assert len(savers) == 1 and savers[0].save_dict["model"] is parser.get_parsed_content("network")
    # the best model so far stays in the run's folder; a finished run publishes it to models/model.pt
    assert savers[0]._key_metric_checkpoint is not None and Path(savers[0].save_dir) == tmp_path / "eval" / "checkpoints"
    publishers = [h for h in parser.get_parsed_content("train#handlers") if isinstance(h, PublishBestModel)]
    assert len(publishers) == 1 and publishers[0].saver is savers[0]
    assert publishers[0].path == BUNDLES / bundle / "models" / "model.pt"


def _later_wins(masks: np.ndarray) -> np.ndarray:
    """(X, Y, 1, N) masks -> (X, Y) label map, a later structure over an earlier one (heart over lungs, clavicles over
    both): a map as a viewer saves it, one value per pixel."""
    label_map = np.zeros(masks.shape[:2], np.uint8)
    for i in range(masks.shape[-1]):
        label_map[masks[:, :, 0, i] > 0] = i + 1
    return label_map


def test_cxr_trains_on_viewer_label_maps_beside_masks(sample_set, tmp_path):
    """MONAI Label's /train hands the bundle the label maps a viewer saved (labels/final); the sample set has 5-channel
    masks. One datalist may mix both: a map loads as the masks it encodes, the overlap lost to the structure it kept."""
    from unimiss_monai.data.samples import find_dataset

    from bundle_runner import run_workflow

    samples = sample_set("cxr_segmentation")
    root = Path(find_dataset(str(samples), "cxr_segmentation"))
    cases = json.loads((root / "datalist.json").read_text())["training"][:3]
    items = []
    for i, case in enumerate(cases):
        label = nib.load(str(root / case["label"]))
        masks = np.asarray(label.dataobj)
        label_map = _later_wins(masks)
        map_path = tmp_path / f"map_{i}.nii.gz"
        nib.save(nib.Nifti1Image(label_map, label.affine), str(map_path))
        # the reference: the masks the map encodes, built from the map by plain numpy and saved as masks
        kept = np.stack([label_map == v for v in range(1, masks.shape[-1] + 1)], -1)[:, :, None].astype(np.uint8)
        assert kept.sum() < masks.sum()  # the sample's structures overlap, so the map has lost pixels
        kept_path = tmp_path / f"kept_{i}.nii.gz"
        nib.save(nib.Nifti1Image(kept, label.affine), str(kept_path))
        items.append(({"image": str(root / case["image"]), "label": str(map_path)},
                      {"image": str(root / case["image"]), "label": str(kept_path)},
                      {"image": str(root / case["image"]), "label": str(root / case["label"])}))
    train = [items[0][0], items[1][2], items[2][0]]  # label maps and masks in one batch
    val = [items[0][0], items[0][1]]
    wf = run_workflow(
        "unimiss_cxr_segmentation", ["train.json", "smoke.yaml"], "train", bundle_root=str(tmp_path / "bundle"),
        dataset_dir=str(samples), max_epochs=1, output_dir=str(tmp_path / "eval"),
        **{"train#dataset#data": train, "validate#dataset#data": val},
    )
    validation = wf.parser.get_parsed_content("validate#dataset")
    from_map, from_masks = validation[0]["label"], validation[1]["label"]
    assert from_map.shape == (5, 64, 64) and torch.equal(torch.as_tensor(from_map), torch.as_tensor(from_masks))
    metrics = wf.parser.get_parsed_content("validate#evaluator").state.metrics
    assert np.isfinite(metrics["val_mean_dice"])
    assert (tmp_path / "bundle" / "models" / "smoke" / "model.pt").is_file()
