"""Classification datalists: label forms, clear errors for bad labels, class-balanced weights; the loss."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from unimiss_monai.data.classification_labels import balanced_sample_weights, canonical_label, list_images, load_classification_datalist
from unimiss_monai.data.samples import held_out_images
from unimiss_monai.losses.classification import ClassificationLoss

NAMES = ["nodule", "cardiomegaly", "effusion"]


def test_canonical_label_forms():
    assert canonical_label("cardiomegaly", NAMES, False) == 1
    assert canonical_label(2, NAMES, False) == 2
    assert canonical_label([0, 0, 1], NAMES, False) == 2
    assert canonical_label(["nodule", "effusion"], NAMES, True) == [1.0, 0.0, 1.0]
    assert canonical_label([], NAMES, True) == [0.0, 0.0, 0.0]
    assert canonical_label([0, 1, 1], NAMES, True) == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("label, multi, match", [
    ("pneumonia", False, "unknown class name 'pneumonia'"),
    (["nodule", "mass"], True, "unknown class name 'mass'"),
    ([1, 0], True, "has length 2, but there are 3 classes"),
    ([1, 1, 0], False, "exactly one 1"),
    (7, False, "index in \\[0, 3\\)"),
])
def test_bad_labels(label, multi, match):
    with pytest.raises(ValueError, match=match):
        canonical_label(label, NAMES, multi, where="datalist.json['training'][0]")


def test_load_datalist_and_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "dl.json").write_text(json.dumps({"training": [{"image": "a.png", "label": ["nodule"]}],
                                                  "validation": [{"image": "missing.png", "label": []}]}))
    items = load_classification_datalist(tmp_path / "dl.json", "training", NAMES, multi_label=True)
    assert items == [{"image": str(tmp_path / "a.png"), "label": [1.0, 0.0, 0.0]}]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_classification_datalist(tmp_path / "dl.json", "validation", NAMES, multi_label=True)
    with pytest.raises(ValueError, match="has no 'test' key"):
        load_classification_datalist(tmp_path / "dl.json", "test", NAMES)
    assert list_images(tmp_path, (".png",)) == [{"image": str(tmp_path / "a.png")}]


def test_a_file_given_as_the_input_folder_is_said_to_be_a_file_not_missing(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(FileNotFoundError) as info:
        list_images(tmp_path / "a.png")
    assert str(info.value) == (f"input folder {str(tmp_path / 'a.png')!r} is a file, not a folder; pass --dataset_dir "
                               "with the folder of your images (put a single image in a folder of its own)")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "gone")


def test_balanced_weights_equalise_classes():
    items = [{"label": 0}] * 6 + [{"label": 1}] * 2 + [{"label": 2}]
    w = torch.tensor(balanced_sample_weights(items, 3))
    per_class = [w[:6].sum(), w[6:8].sum(), w[8:].sum()]
    torch.testing.assert_close(torch.stack(per_class), torch.ones(3, dtype=w.dtype))
    multi = balanced_sample_weights([{"label": [1.0, 0.0]}, {"label": [1.0, 0.0]}, {"label": [0.0, 0.0]}], 2)
    assert multi == [0.5, 0.5, 1.0]


def test_loss_matches_torch_with_smoothing():
    logits = torch.randn(4, 3)
    target = torch.tensor([0, 2, 1, 2])
    expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    torch.testing.assert_close(ClassificationLoss(label_smoothing=0.1)(logits, target[:, None]), expected)
    torch.testing.assert_close(ClassificationLoss(label_smoothing=0.1)(logits, torch.eye(3)[target]), expected)
    hot = torch.tensor([[1.0, 0.0, 1.0]] * 4)
    smoothed = hot * 0.8 + 0.1
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, smoothed, pos_weight=torch.tensor([1.0, 2.0, 3.0]))
    got = ClassificationLoss(multi_label=True, label_smoothing=0.2, pos_weight=[1.0, 2.0, 3.0])(logits, hot)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="must equal logits"):
        ClassificationLoss(multi_label=True)(logits, target)


@pytest.mark.parametrize("item, match", [(None, r"\[1\]: each item needs 'image' and 'label' keys, got None"),
                                         ({"image": ["a.png"], "label": 0}, r"\[1\]: 'image' is \['a.png'\]; give one")])
def test_an_item_that_is_not_one_labelled_path_is_refused_naming_the_datalist(tmp_path, item, match):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "dl.json").write_text(json.dumps({"training": [{"image": "a.png", "label": 0}, item]}))
    with pytest.raises(ValueError, match=r"dl.json\['training'\]" + match):
        load_classification_datalist(tmp_path / "dl.json", "training", NAMES)


def test_a_datalist_of_other_class_names_is_told_the_option_to_pass_as_the_shell_reads_it(tmp_path):
    """The suggested --class_names was wrapped in double quotes around Python's repr: not a word the shell passes on
    for a name with an apostrophe."""
    import shlex

    listed = ["nodule", "Crohn's effusion"]
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "dl.json").write_text(json.dumps({"class_names": listed, "training": [{"image": "a.png", "label": 0}]}))
    with pytest.raises(ValueError) as err:
        load_classification_datalist(tmp_path / "dl.json", "training", NAMES)
    message = str(err.value)
    option = message.split("pass --class_names ", 1)[1].split(" to use the datalist's")[0]
    assert json.loads(shlex.split(option)[0]) == listed and "\n" not in message


@pytest.mark.parametrize("name", ["cxr_classification", "ct_classification"])
def test_inference_on_a_samples_data_set_lists_its_test_split_only(tmp_path, name):
    import shutil

    from unimiss_monai.data import find_dataset, samples

    root = samples(str(tmp_path / "samples"), synthetic=True, only=name)
    folder = find_dataset(root, name)
    test = json.loads((tmp_path / "samples" / name / "datalist.json").read_text())["test"]
    assert list_images(folder) == [{"image": str(tmp_path / "samples" / name / t["image"])} for t in test]
    assert len(list_images(Path(folder) / "images")) > len(test)  # the images folder itself: everything
    copy = shutil.copytree(folder, tmp_path / "mine")  # the same files outside a samples output: the user's own data,
    assert list_images(copy) == [{"image": str(copy / t["image"])} for t in test]  # whose datalist's test list is read
    (copy / "datalist.json").unlink()
    assert len(list_images(copy)) == len(list_images(Path(folder) / "images"))  # without one: every image


def test_a_samples_data_set_is_known_by_any_path_and_its_test_split_read_or_said_unreadable(tmp_path, monkeypatch, caplog):
    import json

    from unimiss_monai.data import samples

    root = Path(samples(str(tmp_path / "samples"), synthetic=True, only="cxr_classification"))
    folder, datalist = root / "cxr_classification", root / "cxr_classification" / "datalist.json"
    test = [{"image": str(folder / t["image"])} for t in json.loads(datalist.read_text())["test"]]
    monkeypatch.chdir(folder / "images")
    assert list_images("..") == test and list_images(os.path.join("..", "images", "..")) == test
    content = json.loads(datalist.read_text())
    datalist.write_text(json.dumps({**content, "test": []}))
    with pytest.raises(FileNotFoundError, match="has no test image"):
        list_images("..")
    datalist.write_text(json.dumps({k: v for k, v in content.items() if k != "test"}))
    with caplog.at_level("WARNING"):
        everything = list_images("..")
    # for want of the test list, the one a model was chosen on, not trained on, and both said
    validation = [{"image": str(folder / t["image"])} for t in content["validation"]]
    assert everything == validation != test and "its test split cannot be read (KeyError" in caplog.text
    assert "so its 'validation' list (8 entries) is the input" in caplog.text
    assert "--only cxr_classification --synthetic true --overwrite true" in caplog.text
    datalist.write_text(json.dumps(content))
    (tmp_path / "link").symlink_to(folder)  # a link to the data set is the data set
    assert list_images(tmp_path / "link") == test
    manifest = json.loads((root / "samples.json").read_text())
    manifest["datasets"] = {"alias": manifest["datasets"]["cxr_classification"], **manifest["datasets"]}
    (root / "samples.json").write_text(json.dumps(manifest))  # two names of one folder: still its test split
    assert list_images(folder) == test


def test_a_samples_data_set_without_splits_is_all_input_and_said_nothing_of(tmp_path, caplog):
    from unimiss_monai.data import samples

    root = samples(str(tmp_path / "samples"), synthetic=True, only="drr_generation")
    caplog.clear()  # the build's own lines, which other tests' logging settings may let through
    with caplog.at_level("WARNING"):
        held = held_out_images(Path(root) / "drr_generation")
    assert held is None and not [r for r in caplog.records if r.levelname != "INFO" or "test split" in r.getMessage()]


@pytest.mark.parametrize("multi", [False, True])
def test_labels_count_in_the_datalist_s_own_class_order(tmp_path, multi):
    """A datalist listing the bundle's classes in another order ("class_names", as the sample sets write it): its
    indices and vectors count in that order. They were read in the bundle's, turning every nodule into a
    cardiomegaly with exit 0."""
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        (tmp_path / name).write_bytes(b"")
    listed = ["effusion", "nodule", "cardiomegaly"]
    items = [{"image": "a.png", "label": 1}, {"image": "b.png", "label": [0, 0, 1]},
             {"image": "c.png", "label": "effusion"}]
    if multi:
        items = [{"image": "a.png", "label": [1, 1, 0]}, {"image": "b.png", "label": ["cardiomegaly"]},
                 {"image": "c.png", "label": [0, 0, 0]}]
    (tmp_path / "datalist.json").write_text(json.dumps({"class_names": listed, "training": items}))
    labels = [it["label"] for it in load_classification_datalist(tmp_path / "datalist.json", "training", NAMES, multi)]
    assert labels == ([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]] if multi else [0, 1, 2])
    other = {"class_names": ["mass", "nodule", "normal"], "training": items}
    (tmp_path / "datalist.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"datalist.json: its class_names \['mass', 'nodule', 'normal'\] are not the "
                                         r"bundle's \['nodule', 'cardiomegaly', 'effusion'\]; pass --class_names"):
        load_classification_datalist(tmp_path / "datalist.json", "training", NAMES, multi)


def test_class_names_listed_as_numbers_name_the_bundle_s_classes(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    items = [{"image": "a.png", "label": 0}]
    (tmp_path / "datalist.json").write_text(json.dumps({"class_names": [2, 0, 1], "training": items}))
    loaded = load_classification_datalist(tmp_path / "datalist.json", "training", ["0", "1", "2"])
    assert [it["label"] for it in loaded] == [2]  # the datalist's class 0 is the class named "2"


def test_a_class_without_examples_in_a_split_is_said(tmp_path, caplog):
    # trained without an example of a class, the network cannot learn it; validated without one, its AUC drops out of
    # the score that picks the model: both ran without a word
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        (tmp_path / name).write_bytes(b"")
    items = [{"image": "a.png", "label": ["nodule"]}, {"image": "b.png", "label": ["nodule", "effusion"]},
             {"image": "c.png", "label": ["nodule"]}]
    held_out = [{"image": "d.png", "label": ["nodule"]}, {"image": "e.png", "label": ["nodule", "effusion"]}]
    (tmp_path / "datalist.json").write_text(json.dumps({"training": items, "validation": held_out}))
    with caplog.at_level("WARNING"):
        load_classification_datalist(tmp_path / "datalist.json", "training", NAMES, multi_label=True)
        load_classification_datalist(tmp_path / "datalist.json", "validation", NAMES, multi_label=True)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    path = tmp_path / "datalist.json"
    assert said == [
        f"datalist {path}: class 'nodule' has no case without it in 'training' (3 items): the network cannot learn it; "
        "add such items or drop the class from class_names",
        f"datalist {path}: class 'cardiomegaly' has no example in 'training' (3 items): the network cannot learn it; "
        "add such items or drop the class from class_names",
        f"datalist {path}: class 'nodule' has no case without it in 'validation' (2 items): its AUC is undefined "
        "there, so scores over the classes leave it out; add such items or drop the class from class_names",
        f"datalist {path}: class 'cardiomegaly' has no example in 'validation' (2 items): its AUC is undefined there, "
        "so scores over the classes leave it out; add such items or drop the class from class_names"], said
    caplog.clear()
    exclusive = [{"image": "a.png", "label": "nodule"}, {"image": "b.png", "label": "effusion"}]
    (tmp_path / "datalist.json").write_text(json.dumps({"training": exclusive}))
    with caplog.at_level("WARNING"):
        load_classification_datalist(tmp_path / "datalist.json", "training", NAMES)
    assert [r.getMessage().split(":")[1] for r in caplog.records if r.levelname == "WARNING"] == [
        " class 'cardiomegaly' has no example in 'training' (2 items)"]


BAD_ITEMS = [{"image": "b.png", "label": "pneumonia"}, {"image": "c.png", "label": -1},
             {"image": "d.png", "label": None}, {"image": "e.png", "label": float("nan")},
             {"image": "f.png", "label": True}, {"image": "g.png", "label": 1.5},
             {"image": "h.png", "label": [1, 0, 1, 0]}, {"image": "i.png", "label": ["nodule", "effusion"]},
             {"image": "j.png"}]


def _datalist_with_bad_labels(tmp_path, split: str) -> Path:
    good = [{"image": "a.png", "label": "nodule"}, {"image": "k.png", "label": 2}]
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({split: [good[0], *BAD_ITEMS, good[1]]}))
    return path


def test_evaluation_flags_each_item_whose_label_cannot_be_read_and_keeps_the_others(tmp_path):
    # one bad label refused the whole evaluation and named only itself: one rerun per bad label before any score
    path = _datalist_with_bad_labels(tmp_path, "test")
    items = load_classification_datalist(path, "test", NAMES, check_images=False)
    assert [it.get("label") for it in items] == [0, *[None] * len(BAD_ITEMS), 2]
    flagged = items[1:-1]
    assert [it["image"] for it in flagged] == [str(tmp_path / it["image"]) for it in BAD_ITEMS]
    for i, it in enumerate(flagged, start=1):
        image = BAD_ITEMS[i - 1]["image"]
        assert it["failed"].startswith(f"{path}['test'][{i}] (image {image!r}): ") and "\n" not in it["failed"], it
    assert "unknown class name 'pneumonia'; the bundle's class_names are" in flagged[0]["failed"]
    assert all("nor an index in [0, 3); label the item with one of those" in it["failed"] for it in flagged[1:6])
    assert "has length 4, but there are 3 classes" in flagged[6]["failed"]
    assert "set multi_label=true" in flagged[7]["failed"] and "needs 'image' and 'label'" in flagged[8]["failed"]
    # asked to refuse, evaluation refuses as training does
    with pytest.raises(ValueError, match="9 items of 'test' cannot be read"):
        load_classification_datalist(path, "test", NAMES, check_images=False, refuse_bad_items=True)


def test_a_flagged_item_fails_its_case_alone_in_the_tolerant_dataset(tmp_path):
    from unimiss_monai.data.tolerant import TolerantDataset

    path = _datalist_with_bad_labels(tmp_path, "test")
    items = load_classification_datalist(path, "test", NAMES, check_images=False)
    dataset = TolerantDataset(items, transform=lambda item: {**item, "image": torch.ones(1, 2, 2)},
                              placeholder_shape=(1, 2, 2))
    assert dataset[0]["failed"] == "" and dataset[0]["label"] == 0
    assert dataset[1]["failed"] == items[1]["failed"] and dataset[1]["case"] == str(tmp_path / "b.png")
    assert torch.equal(dataset[1]["image"], torch.zeros(1, 2, 2)) and "label" not in dataset[1]


def test_training_refuses_every_bad_label_of_the_split_in_one_line(tmp_path, caplog):
    # only the first bad label was named: one rerun per bad label before training could start
    path = _datalist_with_bad_labels(tmp_path, "training")
    with caplog.at_level("ERROR"), pytest.raises(ValueError) as err:
        load_classification_datalist(path, "training", NAMES)
    message = str(err.value)
    assert message.startswith(f"datalist {path}: 9 items of 'training' cannot be read: ['training'][1] (image "
                              "'b.png'): unknown class name 'pneumonia'"), message
    assert "\n" not in message and message.endswith("; and 4 more (each logged above)")
    assert [f"['training'][{i}] (image " in message for i in range(1, 10)] == [True] * 5 + [False] * 4
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert [line.split(" (image ")[0] for line in logged] == [f"{path}['training'][{i}]" for i in range(1, 10)]
    # a single bad label keeps its own line
    (tmp_path / "one.json").write_text(json.dumps({"training": [{"image": "a.png", "label": 0},
                                                                {"image": "b.png", "label": 5}]}))
    with pytest.raises(ValueError) as err:
        load_classification_datalist(tmp_path / "one.json", "training", NAMES)
    assert str(err.value).startswith(f"{tmp_path / 'one.json'}['training'][1] (image 'b.png'): class 5 is neither "
                                     "one of ")
