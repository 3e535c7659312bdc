"""A folder's ``datalist.json`` as the input list of a run (:mod:`unimiss_monai.data.listed_inputs`): which list is
read, the entry forms taken, and the one-line refusals naming the file."""

from __future__ import annotations

import json
import logging

import pytest

from unimiss_monai.data.ct_inputs import find_ct_cases
from unimiss_monai.data.ct_io import CTInputError
from unimiss_monai.data.listed_inputs import INFERENCE_SPLITS, listed_entries, listed_images


def _datalist(folder, content):
    folder.mkdir(exist_ok=True)
    (folder / "datalist.json").write_text(json.dumps(content))
    return folder / "datalist.json"


def test_the_first_non_empty_list_is_read_and_said(tmp_path, caplog):
    path = _datalist(tmp_path, {"testing": [], "test": ["a.png", {"image": "b.png", "name": "bee"}],
                                "training": [{"image": "t.png"}]})
    with caplog.at_level(logging.INFO, logger="unimiss_monai.data.listed_inputs"):
        key, entries = listed_entries(path, INFERENCE_SPLITS, "fix it")
    assert key == "test"  # an empty 'testing' falls through as a missing one would
    assert entries == [{"image": "a.png"}, {"image": "b.png", "name": "bee"}]  # a plain path is an entry
    assert "its 'test' list (2 entries) is the input" in caplog.text
    assert listed_images(tmp_path) == [{"image": str(tmp_path / "a.png")},
                                       {"image": str(tmp_path / "b.png"), "name": "bee"}]


def test_a_folder_without_a_datalist_is_not_listed(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    assert listed_images(tmp_path) is None


def test_drr_generation_renders_training_cts_where_inference_runs_on_the_test_ones(tmp_path, caplog):
    path = _datalist(tmp_path, {"training": [{"image": "tr.nii.gz"}], "test": [{"image": "te.nii.gz"}]})
    with caplog.at_level(logging.WARNING):
        assert [c.name for c in find_ct_cases(path)] == ["tr"]  # an archive's CTs to render: all of its training list
    assert not caplog.records  # no word of a model's training cases: DRR generation trains none
    assert [c.name for c in find_ct_cases(tmp_path, INFERENCE_SPLITS)] == ["te"]


@pytest.mark.parametrize("content, words", [
    ({"testing": [], "validation": [], "ct": [{"image": "a.png"}]},
     "expected a non-empty 'testing' or 'test' or 'validation' or 'training' list"),
    ({"test": [{"label": "a.png"}]}, "'test' entry 0 is {'label': 'a.png'}, with no image path"),
    ({"test": [["a.png"]]}, "'test' entry 0 is ['a.png'], with no image path"),
    ({"test": [{"image": "a.png", "name": "../up"}]}, "'test' entry 0 has 'name' = '../up'; a case name names"),
])
def test_a_bad_datalist_is_refused_in_one_line_naming_it(tmp_path, content, words):
    path = _datalist(tmp_path, content)
    with pytest.raises(ValueError) as err:
        listed_images(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message, message
    # a bad name's own fix is to rename it; the others say what else the user can do
    assert "'name'" in words or message.endswith("move it away to run on every image in the folder"), message
    with pytest.raises(CTInputError, match="plain name" if "'name'" in words else "move it away to read every CT"):
        find_ct_cases(tmp_path, INFERENCE_SPLITS)  # the CT bundles read it through the same check


def test_a_ct_datalist_that_is_no_json_is_refused_naming_it(tmp_path):
    (tmp_path / "datalist.json").write_text("{nope")
    with pytest.raises(CTInputError, match=r"datalist.json: not valid JSON \("):
        find_ct_cases(tmp_path, INFERENCE_SPLITS)


def test_a_samples_cxr_set_runs_on_its_inference_folder_said_and_a_copy_on_its_test_list(tmp_path, caplog):
    import shutil

    from unimiss_monai.data.xray import list_radiographs

    root = tmp_path / "samples"
    data = root / "cxr_segmentation"
    for name in ("images/tr.png", "images/te.png", "inference/real.png"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(b"")
    _datalist(data, {"training": [{"image": "images/tr.png"}], "test": [{"image": "images/te.png"}]})
    (root / "samples.json").write_text(json.dumps({"datasets": {"cxr_segmentation": {
        "path": "cxr_segmentation", "datalist": "cxr_segmentation/datalist.json"}}}))
    with caplog.at_level(logging.INFO):
        assert list_radiographs(data) == [{"image": str(data / "inference" / "real.png")}]
    assert f"{data} is a samples data set: its radiographs to run on are those in {data / 'inference'}" in caplog.text
    copy = shutil.copytree(data, tmp_path / "mine")  # the user's own data set: its datalist's test list
    assert list_radiographs(copy) == [{"image": str(copy / "images" / "te.png")}]


def test_listed_images_in_sub_folders_are_named_by_their_paths_as_a_scan_names_them(tmp_path):
    _datalist(tmp_path, {"test": ["P1/ST1/IM1.dcm", "P2/ST1/IM1.dcm", {"image": "P3/IM1.dcm", "name": "third"}]})
    assert listed_images(tmp_path) == [{"image": str(tmp_path / "P1/ST1/IM1.dcm"), "name": "P1_ST1_IM1"},
                                       {"image": str(tmp_path / "P2/ST1/IM1.dcm"), "name": "P2_ST1_IM1"},
                                       {"image": str(tmp_path / "P3/IM1.dcm"), "name": "third"}]
    _datalist(tmp_path, {"test": ["images/a.png", "images/b.png"]})  # one folder: the file names tell them apart
    assert listed_images(tmp_path) == [{"image": str(tmp_path / "images" / n)} for n in ("a.png", "b.png")]


def test_a_datalist_of_another_kind_leaves_the_folder_to_the_scan_said_and_a_broken_one_is_refused(tmp_path, caplog):
    from unimiss_monai.data.classification_labels import list_images

    (tmp_path / "datalist.json").write_text('{"ct": [{"image": "a.nii.gz"}], "xray": []}')  # a pretraining datalist
    (tmp_path / "a.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert listed_images(tmp_path) is None
        assert list_images(tmp_path, (".png",)) == [{"image": str(tmp_path / "a.png")}]
    assert "datalist.json holds no 'testing' or 'test' or 'validation' or 'training' list" in caplog.text
    # a typo in the user's list: scanning instead would run on the training images the list keeps apart
    (tmp_path / "datalist.json").write_text('{"test": ["a.png",]}')
    with pytest.raises(ValueError, match=r"datalist.json: not valid JSON \(.*; fix it, or move it away"):
        list_images(tmp_path, (".png",))


def test_a_validation_then_a_training_list_read_for_want_of_a_test_one_are_warned_of(tmp_path, caplog):
    _datalist(tmp_path, {"training": ["a.png"], "validation": ["b.png"]})
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.listed_inputs"):
        # the cases no model learnt from come before those it did
        assert listed_images(tmp_path) == [{"image": str(tmp_path / "b.png")}]
    assert ("no non-empty 'testing' or 'test' list, so its 'validation' list (1 entries) is the input: these are the "
            "cases a fine-tune run chose its best model on") in caplog.text
    caplog.clear()
    _datalist(tmp_path, {"training": ["a.png"], "validation": []})
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.data.listed_inputs"):
        assert listed_images(tmp_path) == [{"image": str(tmp_path / "a.png")}]
    assert ("no non-empty 'testing' or 'test' or 'validation' list, so its 'training' list (1 entries) is the input: "
            "a model trained on it is run on its own training cases; add a 'test' list") in caplog.text
