"""Segmentation evaluation past a test entry without its label map, for the CT and CXR segmentation bundles
(``train.json + evaluate.json + smoke.yaml``): an item with no ``label`` refused the whole evaluation at the datalist,
naming neither the item's image nor the case's place among the others. Now it fails alone, in one line naming the
datalist entry and the fix, as does an item whose label file is gone; the good case is scored and the run ends
non-zero."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from bundle_runner import smoke_weights
from test_evaluation_bad_cases import CASES, _data_with, _evaluate, _good_scores

pytestmark = pytest.mark.integration


def _no_label(item: dict, root: Path) -> dict:
    """The case's image listed without its ``label``."""
    return {"image": item["image"]}


def _gone_label(item: dict, root: Path) -> dict:
    """The case with a label path that names no file (moved or deleted after the datalist was written)."""
    return {**item, "label": str(root / "gone" / ("nothere" + "".join(Path(item["label"]).suffixes)))}


@pytest.mark.parametrize("bundle", ["unimiss_ct_segmentation", "unimiss_cxr_segmentation"])
def test_evaluation_fails_an_item_without_its_label_alone(bundle, sample_set, tmp_path):
    from unimiss_monai.data.samples import find_dataset

    name = bundle.removeprefix("unimiss_")
    samples = Path(find_dataset(sample_set(name), name))
    root = tmp_path / "bundle"
    smoke_weights(bundle, root)
    split = CASES[bundle][0]

    data, bad = _data_with(samples, bundle, tmp_path / "no_label", bad=True, make_bad=_no_label)
    out = tmp_path / "out_no_label"
    error = _evaluate(bundle, data, root, out)
    assert re.match(r"evaluation: 1 of 2 cases failed, listed .* in ", error), error
    scores, failed = _good_scores(bundle, out)
    assert [f["case"] for f in failed] == [str(data / bad["image"])]
    assert failed[0]["reason"] == (f"{data / 'datalist.json'}[{split!r}][1]: has no 'label' (it has ['image']); add "
                                   "the path of its label map, or leave the item out of the evaluation")
    with open(out / "segmentation_report.csv", newline="") as f:
        assert [(r["case"], r["failed"]) for r in csv.DictReader(f) if r["failed"]] == [
            (failed[0]["case"], failed[0]["reason"])]

    data, bad = _data_with(samples, bundle, tmp_path / "gone_label", bad=True, make_bad=_gone_label)
    out_gone = tmp_path / "out_gone_label"
    error = _evaluate(bundle, data, root, out_gone)
    assert re.match(r"evaluation: 1 of 2 cases failed, listed .* in ", error), error
    gone_scores, failed = _good_scores(bundle, out_gone)
    assert gone_scores == scores, "the good case scored otherwise beside a missing label"
    assert [f["case"] for f in failed] == [str(data / bad["image"])]
    assert failed[0]["reason"] == (f"{data / bad['image']}: label {bad['label']!r} does not exist; fix the datalist "
                                   "entry or restore the file")
    assert json.loads((out_gone / "segmentation_report.json").read_text())["num_failed"] == 1
