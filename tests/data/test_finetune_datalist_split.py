"""A fine-tune datalist with no, or an empty, ``training`` list is refused in one line naming the file, the key and
what it should hold, by the segmentation loader and the classification loader alike (not by the sampler's
``num_samples=0``)."""

from __future__ import annotations

import json

import pytest

from unimiss_monai.data.classification_labels import load_classification_datalist
from unimiss_monai.data.datalists import load_datalist, read_split, shared_images

# the DRR bundle's datalist without slab mode: slab pairs for pretraining under "training", none here
DRR_LIKE = {"testing": [{"name": "ct", "image": "ct/ct_AP.nii.gz", "label": "ct/ct_AP_labels.nii.gz"}],
            "training": [], "failures": []}


def _loaders():
    return [lambda p: load_datalist(p, "training"),
            lambda p: load_classification_datalist(p, "training", ["normal", "nodule"])]


@pytest.mark.parametrize("content, problem", [
    ({"testing": DRR_LIKE["testing"]}, "has no 'training' key"),
    (DRR_LIKE, "'training' is an empty list"),
])
@pytest.mark.parametrize("which", [0, 1], ids=["segmentation", "classification"])
def test_missing_or_empty_training_list_is_refused_in_one_line(tmp_path, content, problem, which):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as err:
        _loaders()[which](path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and problem in message
    assert '"image"' in message and '"label"' in message  # what the list should hold


def test_a_training_list_loads_as_monai_does(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "a.nii.gz"}]}))
    assert load_datalist(path) == [{"image": str(tmp_path / "a.nii.gz"), "label": str(tmp_path / "a.nii.gz")}]


@pytest.mark.parametrize("bundle", ["unimiss_ct_segmentation", "unimiss_cxr_segmentation"])
@pytest.mark.parametrize("section", ["train", "validate"])
def test_the_segmentation_bundles_read_their_splits_through_the_check(tmp_path, bundle, section):
    import sys
    from pathlib import Path

    from monai.bundle import ConfigParser

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
    from bundle_runner import configs

    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(DRR_LIKE))
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json"))
    parser.update({"dataset_dir": str(tmp_path), "bundle_root": str(tmp_path), "data_root": str(tmp_path),
                   "datalist": str(path)})
    split = "training" if section == "train" else "validation"
    with pytest.raises(Exception) as err:  # MONAI may wrap an expression's error: look along the chain
        parser.get_parsed_content(f"{section}#dataset#data")
    chain, e = [], err.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    problem = "'training' is an empty list" if split == "training" else "has no 'validation' key"
    assert any(isinstance(e, ValueError) and problem in str(e) and str(path) in str(e) for e in chain)


def test_an_image_listed_twice_is_refused_and_one_trained_on_is_named_when_scored(tmp_path, caplog):
    """An image listed twice in a split weighs double in every mean score (or is oversampled unsaid in training); one
    of an evaluation split that 'training' lists too is scored but said not to be held out."""
    import logging

    path = tmp_path / "datalist.json"
    a, b = {"image": "a.nii.gz", "label": "a_seg.nii.gz"}, {"image": "b.nii.gz", "label": "b_seg.nii.gz"}
    path.write_text(json.dumps({"training": [a, b], "test": [b, {**b, "image": "./b.nii.gz"}]}))
    with pytest.raises(ValueError, match=rf"^datalist {path}: 'test' lists b.nii.gz with the same label 2 times "
                                         r"\(as one file, however its path is written\); list each item once$"):
        read_split(path, "test")
    # a relative and an absolute path of one file, the label too: one item listed twice, oversampled unsaid
    path.write_text(json.dumps({"training": [a, {"image": str(tmp_path / "a.nii.gz"),
                                                 "label": str(tmp_path / "a_seg.nii.gz")}]}))
    (tmp_path / "a_seg.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="lists a.nii.gz with the same label 2 times"):
        read_split(path, "training")
    raters = {"training": [a, b, {**b, "label": "b_seg_rater2.nii.gz"}]}  # two raters' labels of one image: two items
    path.write_text(json.dumps(raters))
    assert len(read_split(path, "training")) == 3
    absolute = {"image": str(tmp_path / "a.nii.gz"), "label": "a_seg.nii.gz"}  # a's file, written otherwise
    path.write_text(json.dumps({"training": [a, b], "test": [b, absolute, {"image": "c.nii.gz", "label": "c.nii.gz"}]}))
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.datalists"):
        assert len(read_split(path, "test")) == 3
        read_split(path, "training")
    assert caplog.text.count("are in 'training' too") == 1
    assert "2 image(s) of 'test' are in 'training' too (e.g. b.nii.gz): their scores are not held out" in caplog.text
    # what the evaluation records of it; the validation split chose the checkpoint, so an image of it counts as well
    assert shared_images(path, "test") == {"training": ["b.nii.gz", str(tmp_path / "a.nii.gz")]}
    c = {"image": "c.nii.gz", "label": "c.nii.gz"}
    path.write_text(json.dumps({"training": [a], "validation": [c], "test": [a, c, b]}))
    assert shared_images(path, "test") == {"training": ["a.nii.gz"], "validation": ["c.nii.gz"]}
    assert shared_images(path, "validation") == {} == shared_images(path, "training")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.datalists"):
        read_split(path, "test")
    assert "1 image(s) of 'test' are in 'validation' too (e.g. c.nii.gz): their scores are not held out" in caplog.text
    path.write_text(json.dumps({"training": [a, c], "validation": [c]}))
    assert shared_images(path, "validation") == {"training": ["c.nii.gz"]} and shared_images(path, "training") == {}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.datalists"):
        read_split(path, "training")  # training's images are meant to be trained on: nothing to warn of
    assert "are in" not in caplog.text
    path.write_text("not JSON")  # the evaluation's own reading refuses it in its words
    assert shared_images(path, "test") == {}


def test_an_item_without_its_label_is_refused_naming_the_item(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz"}],
                                "test": [{"image": "a.nii.gz", "label": "a_seg.nii.gz"}, {"image": "b.nii.gz"}]}))
    assert len(load_datalist(path, "training")) == 1
    with pytest.raises(ValueError, match=rf"^datalist {path}: item 1 of 'test' has no 'label' \({{'image': 'b.nii.gz'}}\); "
                                         "every item is"):
        load_datalist(path, "test")


def test_a_dataset_dir_given_as_the_datalist_file_is_told_as_such(tmp_path):
    """The bundles read ``<dataset_dir>/datalist.json``: given the file itself, they said that
    ``.../datalist.json/datalist.json`` does not exist."""
    from unimiss_monai.data import load_pretraining_datalist

    listed = tmp_path / "datalist.json"
    listed.write_text('{"training": [{"image": "a.png", "label": "b.png"}]}')
    line = f"--dataset_dir {str(listed)!r} is a file; pass the folder that holds the datalist, named datalist.json there"
    for read in (read_split, load_pretraining_datalist):
        with pytest.raises(FileNotFoundError) as err:
            read(listed / "datalist.json")
        assert str(err.value) == line
    with pytest.raises(FileNotFoundError, match=r"datalist '.*absent/datalist.json' does not exist; write one"):
        read_split(tmp_path / "absent" / "datalist.json")


@pytest.mark.parametrize("bundle", ["unimiss_ct_segmentation", "unimiss_cxr_segmentation"])
def test_training_on_labels_that_hold_no_structure_is_refused(tmp_path, bundle):
    # an export of empty segmentations trained, published a model of validation Dice 0 and exited 0
    import sys
    from pathlib import Path

    import nibabel as nib
    import numpy as np
    from monai.bundle import ConfigParser

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
    from bundle_runner import configs

    for name in ("a", "b"):
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)), str(tmp_path / f"{name}_seg.nii.gz"))
    (tmp_path / "unreadable_seg.nii.gz").write_bytes(b"not an image")  # left to fail its own case
    items = [{"image": f"{n}.nii.gz", "label": f"{n}_seg.nii.gz"} for n in ("unreadable", "a", "b")]
    for item in items:  # the images are there (training refuses a missing one before this check)
        (tmp_path / item["image"]).write_bytes(b"")
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": items, "validation": items[1:2]}))
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json"))
    parser.update({"dataset_dir": str(tmp_path), "bundle_root": str(tmp_path), "data_root": str(tmp_path),
                   "datalist": str(path)})
    with pytest.raises(Exception) as err:
        parser.get_parsed_content("train#dataset#data")
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any(f"datalist {path}: no label map of 'training' holds a structure (2 read, every voxel 0" in c
               for c in chain), chain
    b = np.zeros((8, 8, 4), np.uint8)
    b[2:4, 2:4, 1] = 1  # one structure in the last label: the split trains
    nib.save(nib.Nifti1Image(b, np.eye(4)), str(tmp_path / "b_seg.nii.gz"))
    assert len(load_datalist(path, "training", require_foreground=True)) == 3
