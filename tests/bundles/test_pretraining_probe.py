"""The pretraining k-NN probe set: the sample set's probe crops never share a voxel and carry what the probe needs to
keep near-copies apart (case, group, box), and a bundle run probes with that definition (epoch 0 included) and the
matching raw-voxel baseline. Runs write under ``tmp_path`` only."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

BUNDLE = "unimiss_pretraining"


@pytest.fixture(scope="module")
def synthetic_probe(tmp_path_factory) -> tuple[Path, list[dict]]:
    from unimiss_monai.data.samples import samples

    root = Path(samples(str(tmp_path_factory.mktemp("samples")), synthetic=True, only="pretraining")) / "pretraining"
    return root, json.loads((root / "datalist.json").read_text())["probe"]


def _disjoint(a, b) -> bool:
    return any(a[1][d] <= b[0][d] or b[1][d] <= a[0][d] for d in range(3))


def test_probe_crops_are_disjoint_and_located(synthetic_probe):
    from unimiss_monai.data.phantom import make_ct_phantom

    root, probe = synthetic_probe
    assert probe and all({"image", "label", "case", "group", "box"} <= set(item) for item in probe)
    assert {item["group"] for item in probe} == {"phantom"}  # synthetic mode: phantom crops only
    for case, items in itertools.groupby(sorted(probe, key=lambda i: i["case"]), key=lambda i: i["case"]):
        boxes = [item["box"] for item in items]
        assert all(_disjoint(a, b) for a, b in itertools.combinations(boxes, 2)), f"{case}: crops share voxels"
    # each box is where the crop came from: the crop equals the phantom's voxels there (phantom0's shape and seed)
    phantom = make_ct_phantom(shape=(40, 40, 24), spacing=(6.0, 6.0, 6.0), seed=0)
    for item in (i for i in probe if i["case"] == "phantom0"):
        start, stop = item["box"]
        np.testing.assert_array_equal(nib.load(root / item["image"]).get_fdata(),
                                      phantom.hu[tuple(slice(a, b) for a, b in zip(start, stop))])
    # every class occurs in both phantoms: no class can be matched by the case it comes from
    cases_of = {label: {i["case"] for i in probe if i["label"] == label} for label in {i["label"] for i in probe}}
    assert all(cases == {"phantom0", "phantom1"} for cases in cases_of.values()), cases_of


@pytest.mark.slow
def test_smoke_run_probes_with_the_honest_baseline(synthetic_probe, tmp_path):
    # the bundle's probe: epoch 0 (untrained) and every epoch, with overlapping neighbours excluded, and a pixel
    # baseline equal to the k-NN computed here on the raw voxels of the same transformed crops
    import torch
    from bundle_runner import run_workflow
    from monai.transforms import Compose

    from unimiss_monai.handlers.knn_probe import knn_accuracy, load_probe_items, probe_exclusion

    root, probe = synthetic_probe
    out = tmp_path / "out"
    wf = run_workflow(BUNDLE, ["train.json", "smoke.yaml"], "train", dataset_dir=str(root.parent), output_dir=str(out),
                      bundle_root=str(tmp_path / "bundle"), **{"train#epochs": 1})
    history = json.loads((out / "knn_probe.json").read_text())
    assert [e["epoch"] for e in history] == [0, 1] and history[0]["iteration"] == 0
    assert all(e["exclude"] == "overlap" and e["num_items"] == len(probe) for e in history)
    items = load_probe_items(root / "datalist.json")
    transform = Compose(wf.parser.get_parsed_content("train#probe_transform"))
    pixels = torch.stack([torch.as_tensor(transform(dict(item))["image"]).float().flatten() for item in items])
    names = sorted({item["label"] for item in items})
    labels = torch.tensor([names.index(item["label"]) for item in items])
    expected = knn_accuracy(pixels, labels, k=20, exclude=probe_exclusion(items, "overlap"))
    assert history[-1]["pixel_baseline"] == pytest.approx(expected)
    # the encoder's four stage maps are probed beside the CLS, every epoch, and the last entry is the same k-NN on
    # the trained teacher's own stage maps of the transformed crops
    assert all(sorted(e["feature_maps"]) == ["stage1", "stage2", "stage3", "stage4"] for e in history)
    teacher = wf.parser.get_parsed_content("network_def").teacher.backbone  # the instance that trained
    teacher.eval()
    images = torch.stack([torch.as_tensor(transform(dict(item))["image"]).float() for item in items])
    with torch.no_grad():
        maps = teacher.forward_intermediates(images)[0][-4:]
    for i, fmap in enumerate(maps):
        value = knn_accuracy(fmap.flatten(1), labels, k=20, exclude=probe_exclusion(items, "overlap"))
        assert history[-1]["feature_maps"][f"stage{i + 1}"] == pytest.approx(value)


def test_label_efficiency_pretraining_names_the_studys_options_for_a_users_file(tmp_path, pretraining_samples):
    # the study chooses the pretraining folder, so a refusal there must name the options the study's user has
    from unimiss_monai.benchmarks.label_efficiency.pretrain import pretrain_arm
    from unimiss_monai.data.output_ledger import NotOursError

    bundles = Path(__file__).resolve().parents[2] / "bundles"
    user_file = tmp_path / "pretrained" / "outputs" / "loss_curves.png"
    user_file.parent.mkdir(parents=True)
    user_file.write_bytes(b"the user's picture")
    with pytest.raises(NotOursError, match=r"choose another --out or --pretraining_dir$") as err:
        pretrain_arm("pretrained", tmp_path / "pretrained", 1, {"backbone#preset": "smoke", "image_size_2d": 64},
                     str(pretraining_samples), bundles)
    assert err.value.path == user_file and "--output_dir" not in str(err.value)
    assert user_file.read_bytes() == b"the user's picture" and not (tmp_path / "pretrained" / "model.pt").exists()
