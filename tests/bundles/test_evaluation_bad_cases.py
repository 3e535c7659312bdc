"""Evaluation past a bad case, for the four fine-tune bundles: ``train.json + evaluate.json + smoke.yaml`` over one
good case and one broken one (a label map with a value no class has, a NaN image). The broken case is listed as failed
with one line naming its file, the good one is scored exactly as in a run over it alone, and the run still fails once
the report is written (``python -m monai.bundle run`` exits non-zero)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_runner import run_workflow, smoke_weights

from unimiss_monai.utils.errors import root_cause

pytestmark = pytest.mark.integration


def _bad_label(value: float) -> Callable[[dict, Path], dict]:
    """A copy of the case whose label map holds ``value`` at one voxel (no class has it)."""
    def make(item: dict, root: Path) -> dict:
        image, label = root / item["image"], root / item["label"]
        bad_image, bad_label = image.with_name("bad_" + image.name), label.with_name("bad_" + label.name)
        shutil.copy(image, bad_image)
        src = nib.load(label)
        data = np.asarray(src.dataobj).astype(np.float32)
        data.flat[data.size // 2] = value
        nib.save(nib.Nifti1Image(data, src.affine), bad_label)
        return {"image": str(bad_image.relative_to(root)), "label": str(bad_label.relative_to(root))}
    return make


def _nan_image(item: dict, root: Path) -> dict:
    """A NIfTI copy of the case's image with one NaN pixel or voxel (a PNG cannot hold one)."""
    image = root / item["image"]
    if image.suffix == ".png":
        from PIL import Image

        data, affine = np.asarray(Image.open(image).convert("L"), np.float32).T.copy(), np.eye(4)
    else:
        src = nib.load(image)
        data, affine = np.asarray(src.dataobj, np.float32), src.affine
    data.flat[data.size // 2] = np.nan
    bad = image.parent / ("bad_" + image.name.split(".")[0] + ".nii.gz")
    nib.save(nib.Nifti1Image(data, affine), bad)
    return {**item, "image": str(bad.relative_to(root))}


# bundle -> (its evaluation split, the broken copy of the good case, the file the reason must name, what it says)
CASES = {
    "unimiss_ct_segmentation": ("validation", _bad_label(12), "label", r"12"),
    "unimiss_cxr_segmentation": ("test", _bad_label(255), "label", r"255"),
    "unimiss_ct_classification": ("test", _nan_image, "image", r"non-finite|nan"),
    "unimiss_cxr_classification": ("test", _nan_image, "image", r"non-finite|nan"),
}
SEGMENTATION = {"unimiss_ct_segmentation", "unimiss_cxr_segmentation"}


def _missing_image(item: dict, root: Path) -> dict:
    """The case with an image path that names no file (moved or deleted after the datalist was written)."""
    return {**item, "image": str(root / "gone" / ("nothere" + "".join(Path(item["image"]).suffixes)))}


def _data_with(samples: Path, bundle: str, folder: Path, bad: bool, make_bad=None) -> tuple[Path, dict]:
    """A copy of the sample set whose evaluation split is its first case, and with ``bad`` a broken copy of it after
    (made by ``make_bad``, by default the bundle's own in ``CASES``)."""
    split, own_bad, _, _ = CASES[bundle]
    make_bad = make_bad or own_bad
    shutil.copytree(samples, folder)
    datalist = json.loads((folder / "datalist.json").read_text())
    good = datalist[split][0]
    datalist[split] = [good, make_bad(good, folder)] if bad else [good]
    (folder / "datalist.json").write_text(json.dumps(datalist))
    return folder, datalist[split][-1]


def _evaluate(bundle: str, data: Path, root: Path, out: Path) -> str:
    """Run the evaluation; returns the error it ended with ("" when none)."""
    try:
        run_workflow(bundle, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False, dataset_dir=str(data),
                     bundle_root=str(root), output_dir=str(out), num_workers=0)
    except Exception as err:  # noqa: BLE001 - monai.bundle wraps the report's RuntimeError
        return str(root_cause(err))
    return ""


def _good_scores(bundle: str, out: Path) -> tuple[dict, list[dict]]:
    """``(the good case's scores, the failures listed)`` of an evaluation's report."""
    if bundle in SEGMENTATION:
        report = json.loads((out / "segmentation_report.json").read_text())
        assert report["num_cases"] == 1 and report["num_failed"] == len(report["failed"])
        return report["cases"][0], report["failed"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_cases"] == 1 and metrics["num_failed"] == len(metrics["failed"])
    with open(out / "evaluation_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scored = [r for r in rows if not r.get("failed")]
    assert len(scored) == 1 and [r["name"] for r in rows if r.get("failed")] == [f["case"] for f in metrics["failed"]]
    return {k: v for k, v in scored[0].items() if k != "failed"} | {"accuracy": metrics["accuracy"]}, metrics["failed"]


@pytest.mark.parametrize("bundle", list(CASES))
def test_evaluation_scores_the_good_case_and_lists_the_bad_one(bundle, sample_set, tmp_path):
    from unimiss_monai.data.samples import find_dataset

    name = bundle.removeprefix("unimiss_")
    samples = Path(find_dataset(sample_set(name), name))
    root = tmp_path / "bundle"
    smoke_weights(bundle, root)

    alone, _ = _data_with(samples, bundle, tmp_path / "alone", bad=False)
    assert _evaluate(bundle, alone, root, tmp_path / "out_alone") == ""
    expected, none_failed = _good_scores(bundle, tmp_path / "out_alone")
    assert none_failed == []

    data, bad = _data_with(samples, bundle, tmp_path / "both", bad=True)
    out = tmp_path / "out_both"
    error = _evaluate(bundle, data, root, out)
    assert re.match(r"evaluation: 1 of 2 cases failed, listed .* in ", error), error
    scores, failed = _good_scores(bundle, out)
    assert scores == expected, "the good case scored otherwise beside a bad one"
    assert len(failed) == 1 and failed[0]["case"] == str(data / bad["image"])
    _, _, broken, says = CASES[bundle]
    reason = failed[0]["reason"]
    assert "\n" not in reason and Path(bad[broken]).name in reason and re.search(says, reason, re.I), reason
    if bundle in SEGMENTATION:  # the CSV lists it too, with its reason
        with open(out / "segmentation_report.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["failed"]]
        assert [(r["case"], r["failed"]) for r in rows] == [(failed[0]["case"], reason)]


@pytest.mark.parametrize("bundle", list(CASES))
def test_evaluation_fails_a_missing_image_alone(bundle, sample_set, tmp_path):
    """A test entry whose image does not exist is listed as failed, in one line naming the file and the fix (the
    classification bundles refused the whole run up front; segmentation gave the reader's "[Errno 2]"), the other
    case is scored and the run ends non-zero; the log names no stage it is not in."""
    from unimiss_monai.data.samples import find_dataset

    name = bundle.removeprefix("unimiss_")
    samples = Path(find_dataset(sample_set(name), name))
    root = tmp_path / "bundle"
    smoke_weights(bundle, root)
    data, bad = _data_with(samples, bundle, tmp_path / "data", bad=True, make_bad=_missing_image)
    out = tmp_path / "out"
    error = _evaluate(bundle, data, root, out)
    assert re.match(r"evaluation: 1 of 2 cases failed, listed .* in ", error), error
    _, failed = _good_scores(bundle, out)
    assert [f["case"] for f in failed] == [bad["image"]]
    assert failed[0]["reason"] == f"image {bad['image']!r} does not exist; fix the datalist entry or restore the file"
    # the log line's wording is tested on TolerantDataset itself (tests/data/test_missing_files.py): the bundle's
    # logging.conf takes over the loggers, so no record reaches caplog here


@pytest.mark.parametrize("bundle", ["unimiss_cxr_classification", "unimiss_ct_classification"])
def test_evaluation_fails_each_bad_label_alone(bundle, sample_set, tmp_path):
    """Test entries whose labels no class has (an unknown name, an index out of range) are each listed as failed in
    one line naming the datalist entry and the classes to use, the good cases are scored and the run ends non-zero
    (the first bad label refused the whole evaluation, naming only itself)."""
    from unimiss_monai.data.samples import find_dataset

    name = bundle.removeprefix("unimiss_")
    samples = Path(find_dataset(sample_set(name), name))
    root = tmp_path / "bundle"
    smoke_weights(bundle, root)
    data = tmp_path / "data"
    shutil.copytree(samples, data)
    datalist = json.loads((data / "datalist.json").read_text())
    test = datalist["test"][:4]
    test[1], test[3] = {**test[1], "label": "pneumonia"}, {**test[3], "label": 7}
    datalist["test"] = test
    (data / "datalist.json").write_text(json.dumps(datalist))
    out = tmp_path / "out"
    error = _evaluate(bundle, data, root, out)
    assert re.match(r"evaluation: 2 of 4 cases failed, listed .* in ", error), error
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_cases"] == 2 and metrics["num_failed"] == 2
    failed = metrics["failed"]
    assert [f["case"] for f in failed] == [str(data / test[i]["image"]) for i in (1, 3)]
    entry = f"{data / 'datalist.json'}['test']"
    assert failed[0]["reason"].startswith(f"{entry}[1] (image {test[1]['image']!r}): unknown class name 'pneumonia'; "
                                          "the bundle's class_names are ")
    assert failed[1]["reason"].startswith(f"{entry}[3] (image {test[3]['image']!r}): class 7 is neither one of ")
    assert all("\n" not in f["reason"] for f in failed)
    with open(out / "evaluation_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["failed"]) for r in rows if r["failed"]] == [(f["case"], f["reason"]) for f in failed]
    assert len([r for r in rows if not r["failed"]]) == 2
