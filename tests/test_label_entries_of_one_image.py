"""Classification labels and the cases they name: a label that cannot be read says the forms a label takes; entries of
one image (two labels of one scan) are each named by their own index and keep a case name and output of their own."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from test_duplicate_case_names import _MapNet, _npy, _run

from unimiss_monai.data.case_names import OutputNames, numbered_repeats
from unimiss_monai.data.classification_labels import canonical_label, load_classification_datalist
from unimiss_monai.handlers import ClassificationReport, ClassProbabilityWriter

NAMES = ["nodule", "normal"]


@pytest.mark.parametrize("multi, form", [(False, "or the class name ('nodule') or index (0)"),
                                         (True, "or the list of the classes present (['nodule'], [] for none)")])
def test_a_soft_label_vector_is_refused_with_the_forms_a_label_takes(multi, form):
    # it was refused as "must hold only 0 and 1", with no word of how to write it
    with pytest.raises(ValueError) as err:
        canonical_label([0.5, 0], NAMES, multi, where="dl.json['test'][0]")
    message = str(err.value)
    assert message.startswith("dl.json['test'][0]: label vector [0.5, 0] holds 0.5: each class is present (1) or "
                              "absent (0), and soft labels are not read; give one 0 or 1 per class in the order "
                              "['nodule', 'normal']"), message
    assert "(e.g. [1, 0])" in message and message.endswith(form) and "\n" not in message


def _one_image_datalist(tmp_path, split: str):
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({split: [{"image": "a.png", "label": [0.5, 0]}, {"image": "a.png", "label": "cat"},
                                        {"image": "a.png", "label": "normal"}, {"image": "b.png", "label": 0}]}))
    return path


def test_bad_labels_of_entries_of_one_image_each_name_their_entry_and_the_image(tmp_path):
    # both were listed under a.png only: which of its entries was wrong had to be guessed
    path = _one_image_datalist(tmp_path, "test")
    items = load_classification_datalist(path, "test", NAMES, check_images=False)
    assert [it["image"] for it in items[:2]] == [str(tmp_path / "a.png")] * 2
    assert items[0]["failed"].startswith(f"{path}['test'][0] (image 'a.png'): label vector [0.5, 0] holds 0.5")
    assert items[1]["failed"].startswith(f"{path}['test'][1] (image 'a.png'): unknown class name 'cat'")
    assert [it.get("label") for it in items[2:]] == [1, 0]
    with pytest.raises(ValueError) as err:  # training refuses them in one line, each by its entry and image
        load_classification_datalist(_one_image_datalist(tmp_path, "training"), "training", NAMES, check_images=False,
                                     refuse_bad_items=True)
    assert str(err.value).startswith(f"datalist {path}: 2 items of 'training' cannot be read: ['training'][0] (image "
                                     "'a.png'): label vector [0.5, 0] holds 0.5")
    assert "; ['training'][1] (image 'a.png'): unknown class name 'cat'" in str(err.value)


def test_repeated_names_are_numbered_in_turn_never_into_another_entry_s_name():
    assert numbered_repeats(["a.png", "b.png", "a.png"]) == ["a.png", "b.png", "a.png_2"]
    # a_png_2 is another entry's own name: the repeat takes the next number; letter case is one name
    assert numbered_repeats(["a.png", "A.png", "a.png_2", "a.png"]) == ["a.png", "A.png_3", "a.png_2", "a.png_4"]
    assert numbered_repeats(["x", "y"]) == ["x", "y"]


def test_the_evaluation_keeps_a_named_row_for_each_entry_of_one_image(tmp_path):
    # both rows were named a.png: which scores were which entry's could not be told
    meta = [{"filename_or_obj": "/d/a.png"}, {"filename_or_obj": "/d/b.png"}, {"filename_or_obj": "/d/a.png"}]
    batches = [[{"pred": torch.tensor([p, 1 - p]), "label": torch.tensor([float(t)]), "image_meta_dict": m}]
               for p, t, m in zip((0.9, 0.2, 0.3), (0, 1, 1), meta)]
    engine = Engine(lambda e, b: b)
    ClassificationReport(tmp_path, NAMES).attach(engine)
    engine.run(batches, max_epochs=1)
    with open(tmp_path / "evaluation_predictions.csv", newline="") as f:
        rows = [(r["name"], r["prob_nodule"], r["true_normal"]) for r in csv.DictReader(f)]
    assert rows == [("a.png", "0.900000", "0"), ("b.png", "0.200000", "1"), ("a.png_2", "0.300000", "1")]


def test_inference_keeps_a_saliency_map_for_each_entry_of_one_image(tmp_path):
    # the second entry of an image failed, its map said to overwrite the first's: the run ended non-zero
    a = _npy(tmp_path / "in" / "scan.npy", np.random.default_rng(0).random((8, 8)) + 0.1)
    net, out = _MapNet(), tmp_path / "out"
    data = [{"image": str(a)}, {"image": str(a)}]
    writer = ClassProbabilityWriter(out, ["x", "y"], saliency=True, network=net, output_names=OutputNames(data))
    _run(data, net, writer, (1, 8, 8), out)
    rows = json.loads((out / "predictions.json").read_text())["cases"]
    # named as the file is, not as if another input took its name (scan_npy: the one file counted twice)
    assert [(r["case"], r["status"], r["saliency"]) for r in rows] == [
        (str(a), "ok", str(out / "saliency" / "scan.png")), (str(a), "ok", str(out / "saliency" / "scan_2.png"))]
    assert sorted(p.name for p in (out / "saliency").iterdir()) == ["scan.png", "scan_2.png"]


def test_a_repeated_input_is_never_numbered_into_another_inputs_name():
    # x.png listed twice beside x_2.png: the repeat's map must not take x_2, which is x_2.png's own
    names = OutputNames(["/d/x.png", "/d/x.png", "/d/x_2.png"])
    assert [names.repeat_name("/d/x.png", n) for n in (1, 2, 3)] == ["x", "x_3", "x_4"]
    assert names.repeat_name("/d/x_2.png", 1) == names.name("/d/x_2.png") == "x_2"
    assert names.repeat_name("/d/x.png", 2) == "x_3"  # the same every time asked
