"""Every training bundle takes ``--cache disk --cache_dir DIR`` (pretraining: ``--cache_dir DIR``): its data sets
then cache the deterministic preprocessing under DIR, kept between runs, and give the same items as before."""

from __future__ import annotations

import pytest
import torch
from bundle_runner import BUNDLES, configs
from monai.bundle import ConfigParser
from monai.transforms import RandomizableTrait, Transform

from unimiss_monai.data.disk_cache import DiskCacheDataset


def _parser(bundle: str, tmp_path, dataset_dir, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", "smoke.yaml"))
    parser.update({"bundle_root": str(tmp_path / "root"), "dataset_dir": str(dataset_dir), **overrides})
    return parser


@pytest.mark.parametrize("bundle, dataset", [
    ("unimiss_ct_segmentation", "ct_segmentation"), ("unimiss_ct_classification", "ct_classification"),
    ("unimiss_cxr_segmentation", "cxr_segmentation"), ("unimiss_cxr_classification", "cxr_classification"),
])
def test_finetune_bundles_cache_on_disk(bundle, dataset, sample_set, tmp_path):
    cache = tmp_path / "cache"
    for section in ("train", "validate"):
        plain = _parser(bundle, tmp_path, sample_set(dataset), cache="none").get_parsed_content(f"{section}#dataset")
        disk = _parser(bundle, tmp_path, sample_set(dataset), cache="disk", cache_dir=str(cache)).get_parsed_content(f"{section}#dataset")
        assert isinstance(disk, DiskCacheDataset) and len(disk) == len(plain) > 0
        first = disk.cached(dict(disk.data[0]))
        first_random = disk.transform.get_index_of_first(lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform))
        expected = plain.transform(dict(plain.data[0]), end=first_random)
        assert torch.equal(torch.as_tensor(first["image"]), torch.as_tensor(expected["image"]))
        assert list((cache / section).glob("*.pt")), f"{bundle} {section}: nothing cached"


def test_memory_stays_the_default_where_it_was(sample_set, tmp_path):
    from monai.data import CacheDataset

    ds = _parser("unimiss_ct_segmentation", tmp_path, sample_set("ct_segmentation")).get_parsed_content("train#dataset")
    assert isinstance(ds, CacheDataset)


def test_pretraining_caches_ct_and_xray_phases(pretraining_samples, tmp_path):
    cache = tmp_path / "cache"
    parser = ConfigParser()
    parser.read_config(configs("unimiss_pretraining", "train.json", "smoke.yaml"))
    parser.update({"bundle_root": str(tmp_path / "root"), "dataset_dir": str(pretraining_samples), "cache_dir": str(cache)})
    for key, name in (("train#dataset", "ct"), ("train#xray_dataset", "xray")):
        ds = parser.get_parsed_content(key)
        views = ds[(0, 3)]
        assert "skipped" not in views, views
        assert list((cache / name).glob("*.pt")), f"{name}: nothing cached"


@pytest.mark.parametrize("bundle, dataset", [
    ("unimiss_ct_segmentation", "ct_segmentation"), ("unimiss_ct_classification", "ct_classification"),
    ("unimiss_cxr_segmentation", "cxr_segmentation"), ("unimiss_cxr_classification", "cxr_classification"),
])
def test_demo_overlays_build_their_data_sets(bundle, dataset, sample_set, tmp_path):
    # the demo overlays stack on train.json: their data set ids must still build (tools/demo.sh runs them)
    parser = ConfigParser()
    train_overlay = ["demo_train.yaml"] if (BUNDLES / bundle / "configs" / "demo_train.yaml").is_file() else []
    parser.read_config(configs(bundle, "train.json", "demo.yaml", *train_overlay))
    parser.update({"bundle_root": str(tmp_path / "root"), "dataset_dir": str(sample_set(dataset))})
    for section in ("train", "validate"):
        assert len(parser.get_parsed_content(f"{section}#dataset")) > 0


def _left_posterior_copy(samples, out):
    """A copy of the pretraining samples whose CTs are stored LPS (the same anatomy, rows and columns reversed and
    the affine along): what a DICOM-derived NIfTI often is."""
    import shutil

    import nibabel as nib
    import numpy as np

    shutil.copytree(samples, out)
    for path in sorted((out / "pretraining" / "ct").glob("*.nii.gz")):
        image = nib.load(path)
        data, affine = np.asarray(image.dataobj), image.affine.copy()
        for axis in (0, 1):
            affine[:3, 3] += affine[:3, axis] * (data.shape[axis] - 1)
            affine[:3, axis] *= -1
        nib.save(nib.Nifti1Image(np.flip(data, (0, 1)).copy(), affine), path)
    return out


@pytest.mark.parametrize("on_the_fly", [False, True])
def test_pretraining_samples_from_the_cache_are_those_without_it(pretraining_samples, tmp_path, on_the_fly):
    # the reorientation (and an on-the-fly DRR) come after the cached loading, and need the affine the cache keeps
    lps = _left_posterior_copy(pretraining_samples, tmp_path / "lps")
    cache = tmp_path / "cache"

    def draws(dataset_dir, **overrides):
        parser = _parser("unimiss_pretraining", tmp_path, dataset_dir, drr_on_the_fly=on_the_fly, **overrides)
        ds = parser.get_parsed_content("train#dataset")
        return [ds[(i, seed)] for seed in (1, 2) for i in range(len(ds))]  # two epochs: the cache filled, then read

    reference = draws(pretraining_samples)
    assert reference
    for run in (draws(lps), draws(lps, cache_dir=str(cache)), draws(lps, cache_dir=str(cache))):
        for ref, views in zip(reference, run, strict=True):
            assert "skipped" not in views, views
            keys = [k for k, v in ref.items() if isinstance(v, torch.Tensor)]
            assert keys and all(torch.allclose(ref[k], views[k], atol=1e-5) for k in keys), keys
    assert list((cache / "ct").glob("*.pt"))
