"""The report pictures predictions beside scores only where the scores are of those predictions: a folder whose
prediction files and evaluation come from different runs is said to, in the section that pairs them."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from unimiss_monai.report.document import Figure, Note, Table
from unimiss_monai.report.run_folder import RunFolder

from .synthetic_run import make_run

_PROBS = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6], [0.2, 0.1]])
_TRUTH = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])


def _at(path, seconds):
    os.utime(path, (seconds, seconds))


def _unpaired(blocks, home) -> list[str]:
    return [b.text for b in blocks if isinstance(b, Note) and "predictions and scores of different runs" in b.text
            and b.text.startswith(str(home))]


def _evaluated(tmp_path):
    """A classifier's eval/ as its evaluation writes it, both files given one time (as a copy keeping them would)."""
    from unimiss_monai.handlers.classification_report import write_report

    home = tmp_path / "unimiss_cxr_classification"
    write_report(home / "eval", _PROBS, _TRUTH, ["a", "b"], True, names=["w.png", "x.png", "y.png", "z.png"])
    csv_path, metrics = home / "eval" / "evaluation_predictions.csv", home / "eval" / "metrics.json"
    for path in (csv_path, metrics):
        _at(path, 1_700_000_000)
    return home, csv_path


def _rewrite(csv_path, rows):
    """The prediction file with other rows; its time kept, so that only the cases differ."""
    t = csv_path.stat().st_mtime
    with open(csv_path, newline="") as f:
        header = next(csv.reader(f))
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    _at(csv_path, t)


def _roc(blocks) -> Figure:
    (figure,) = [b for b in blocks if isinstance(b, Figure) and b.name.startswith("roc_")]
    return figure


def test_a_classifiers_own_predictions_and_scores_are_shown_together(tmp_path):
    from unimiss_monai.report.sections.classification import classification_section

    home, _ = _evaluated(tmp_path)
    blocks = classification_section(RunFolder(tmp_path)).blocks
    assert _unpaired(blocks, home) == []
    assert "macro AUC" in _roc(blocks).caption


def _without_checksum(home):
    """metrics.json as an evaluation wrote it before it recorded its prediction file's checksum; its time kept."""
    path = home / "eval" / "metrics.json"
    t = path.stat().st_mtime
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "predictions_sha256"}))
    _at(path, t)


@pytest.mark.parametrize("change, recorded", [
    ("missing", True), ("extra", True), ("values", True),
    ("missing", False), ("extra", False), ("newer", False), ("older", False)])
def test_classifier_predictions_of_another_run_than_metrics_json_are_said_and_not_given_its_scores(
        tmp_path, change, recorded):
    """A case the scores counted whose prediction is gone, a prediction of a case they did not count, the same cases
    with other probabilities (told only by the checksum metrics.json records), and, for scores written before that
    record, a prediction file rewritten after them or scores rewritten after it (an evaluation stopped before its
    prediction file)."""
    from unimiss_monai.report.sections.classification import classification_section

    home, csv_path = _evaluated(tmp_path)
    if not recorded:
        _without_checksum(home)
    rows = [[f"{n}.png", *[f"{p:.6f}" for p in probs], *truth] for n, probs, truth in zip("wxyz", _PROBS, _TRUTH)]
    if change == "missing":
        _rewrite(csv_path, rows[:-1])
    elif change == "extra":
        _rewrite(csv_path, [*rows, ["v.png", "0.5", "0.5", "0", "0"]])
    elif change == "values":  # another model's predictions of the same cases
        _rewrite(csv_path, [[r[0], r[2], r[1], *r[3:]] for r in rows])
    elif change == "newer":
        _at(csv_path, csv_path.stat().st_mtime + 600)
    else:
        _at(home / "eval" / "metrics.json", csv_path.stat().st_mtime + 600)
    blocks = classification_section(RunFolder(tmp_path)).blocks
    (note,) = _unpaired(blocks, home)
    assert "rerun the evaluate step" in note and "eval/metrics.json" in note
    assert ("as the SHA-256 of the prediction file in eval/metrics.json but " in note) is recorded, note
    assert ("copy it again keeping them" in note) is (change in ("newer", "older"))
    # the curves are drawn without the AUCs of metrics.json, and its table says they are not theirs
    figure = _roc(blocks)
    assert "macro AUC" not in figure.caption and "did not score them" in figure.caption
    (table,) = [b for b in blocks if isinstance(b, Table)]
    assert "not those of the ROC curves above" in table.caption


@pytest.mark.parametrize("moved", ["eval/evaluation_predictions.csv", "eval/metrics.json"])
def test_a_classifiers_scores_and_the_predictions_they_record_are_paired_whatever_the_file_times(tmp_path, moved):
    """A copy that did not keep file times (``cp -r``, an unpacked download) leaves one file minutes newer: the
    checksum metrics.json records says they are still one evaluation's."""
    from unimiss_monai.report.sections.classification import classification_section

    home, _ = _evaluated(tmp_path)
    assert len(json.loads((home / "eval" / "metrics.json").read_text())["predictions_sha256"]) == 64
    _at(home / moved, 1_700_000_600)
    blocks = classification_section(RunFolder(tmp_path)).blocks
    assert _unpaired(blocks, home) == [] and "macro AUC" in _roc(blocks).caption


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("pairing"))


def _segmentation(run_dir, tmp_path):
    """A copy of the synthetic run's segmentation bundles, each inference summary written after its outputs."""
    import shutil

    for name in ("unimiss_cxr_segmentation", "unimiss_ct_segmentation"):
        home = tmp_path / "run" / name
        shutil.copytree(run_dir / name, home)
        for output in home.glob("inference/*_seg.nii.gz"):
            _at(output, 1_700_000_000)
        _at(home / "inference" / "summary.json", 1_700_000_010)
    return tmp_path / "run"


def _scored(home, cases):
    path = home / "eval" / "segmentation_report.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "cases": [{"case": c} for c in cases]}))


def test_segmentation_pictures_of_scored_cases_are_shown_with_their_table(made, tmp_path):
    """The evaluation scores more held-out DRRs than inference pictures: no mismatch; the CT pictured is the whole
    CT, which the evaluation (its slabs) never scores."""
    from unimiss_monai.report.sections.ct_segmentation import ct_segmentation_section
    from unimiss_monai.report.sections.cxr_segmentation import cxr_segmentation_section

    run_dir, samples = made
    run = _segmentation(run_dir, tmp_path)
    _scored(run / "unimiss_cxr_segmentation", ["test_000", "test_001"])
    _scored(run / "unimiss_ct_segmentation", ["chest_ct_slab1", "chest_ct_slab3"])
    for build, bundle in ((cxr_segmentation_section, "cxr"), (ct_segmentation_section, "ct")):
        blocks = build(RunFolder(run, samples)).blocks
        assert _unpaired(blocks, run / f"unimiss_{bundle}_segmentation") == []
        assert "not the scores" not in next(b for b in blocks if isinstance(b, Table)).caption


@pytest.mark.parametrize("report", [
    {"cases": [{"case": "test_001"}],
     "failed": [{"case": "/s/cxr_segmentation/images/test_000.nii.gz", "reason": "x"}]},
    {"cases": [{"case": "val_000"}], "split": "validation"},
])
def test_a_pictured_drr_whose_evaluation_failed_or_another_split_scored_is_no_mismatch(made, tmp_path, report):
    """A held-out DRR whose evaluation case failed was evaluated (its reason is listed), and a report of another split
    scores none of the test DRRs pictured: neither is a later run's, and rerunning would not change either."""
    from unimiss_monai.report.sections.cxr_segmentation import cxr_segmentation_section

    run_dir, samples = made
    run = _segmentation(run_dir, tmp_path)
    home = run / "unimiss_cxr_segmentation"
    path = home / "eval" / "segmentation_report.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **report}))
    assert _unpaired(cxr_segmentation_section(RunFolder(run, samples)).blocks, home) == []


@pytest.mark.parametrize("bundle, change", [("cxr", "not scored"), ("cxr", "newer"), ("ct", "newer")])
def test_segmentation_pictures_the_evaluation_did_not_score_are_said_to(made, tmp_path, bundle, change):
    """A held-out DRR pictured that the evaluation's cases do not include, or a prediction written after the inference
    summary that lists it (a later inference run stopped part-way)."""
    from unimiss_monai.report.sections.ct_segmentation import ct_segmentation_section
    from unimiss_monai.report.sections.cxr_segmentation import cxr_segmentation_section

    run_dir, samples = made
    run = _segmentation(run_dir, tmp_path)
    home = run / f"unimiss_{bundle}_segmentation"
    if change == "not scored":
        _scored(home, ["test_001"])
    else:
        (output,) = home.glob("inference/*_seg.nii.gz")
        _at(output, 1_700_000_600)
    blocks = {"cxr": cxr_segmentation_section, "ct": ct_segmentation_section}[bundle](RunFolder(run, samples)).blocks
    (note,) = _unpaired(blocks, home)
    assert "rerun the evaluate and inference steps" in note
    assert ("did not score (test_000)" in note) is (change == "not scored")
    assert ("written after inference/summary.json" in note) is (change == "newer")
    assert "These are not the scores of the predictions pictured above" in next(
        b for b in blocks if isinstance(b, Table)).caption
    assert any(isinstance(b, Figure) for b in blocks)  # the pictures are still shown


def test_the_report_is_still_written_with_the_mismatch_in_it(made, tmp_path):
    from unimiss_monai.report.command import report

    run_dir, samples = made
    run = _segmentation(run_dir, tmp_path)
    _scored(run / "unimiss_cxr_segmentation", ["test_001"])
    page = report(run, samples=samples).read_text()
    assert "holds predictions and scores of different runs" in page
