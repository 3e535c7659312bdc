"""A classifier's ``metrics.json`` that is not one of this project's: the report shows the numbers it understands and
says in one line, naming the file, what it leaves out, instead of showing the file as it is or losing its section."""

from __future__ import annotations

import json

import pytest

from unimiss_monai.report.command import report
from unimiss_monai.report.document import Figure, Note, Table
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.classification import classification_section
from unimiss_monai.report.sections.summary import summary_section

from .synthetic_run import make_run

NAN = float("nan")


def _said(run: RunFolder) -> tuple[list[str], list[list[str]]]:
    """The notes and the table rows of the summary and classification sections."""
    blocks = [b for build in (summary_section, classification_section) for b in build(run).blocks]
    return [b.text for b in blocks if isinstance(b, Note)], [r for b in blocks if isinstance(b, Table) for r in b.rows]


@pytest.mark.parametrize("content", [[1, 2], "0.9", NAN, {"a": {"b": [1]}}, {"macro_auc": "high", "auc": "x"}],
                         ids=["a list", "a string", "NaN", "nested", "other keys"])
def test_a_file_of_no_metrics_is_said_to_be_none_of_this_project_s(tmp_path, content):
    # a list or a string ended the summary section (AttributeError); a dict of other keys was shown as "? cases"
    metrics = tmp_path / "unimiss_cxr_classification" / "eval" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps(content))
    notes, rows = _said(RunFolder(tmp_path))
    line = (f"{metrics} is not a metrics file of this project (neither per_class nor num_cases); move it away, then "
            "run unimiss_cxr_classification's evaluation (configs/train.json with configs/evaluate.json) with its "
            "outputs there.")
    assert notes.count(f"CXR classification: {line}") == 1 and f"Chest X-ray classification: {line}" in notes, notes
    assert not any("CXR" in row[0] for row in rows) and "\n" not in line


def test_values_of_another_kind_are_left_out_and_said_the_others_shown(tmp_path):
    run, samples = make_run(tmp_path)
    metrics = run / "unimiss_cxr_classification" / "eval" / "metrics.json"
    good = json.loads(metrics.read_text())
    junk = {**good, "macro_auc": "high", "macro_ap": NAN, "num_failed": True,
            "per_class": [{**good["per_class"][0], "auc": [0.9]}, "junk", {"class": {"x": 1}}, good["per_class"][1]]}
    metrics.write_text(json.dumps(junk))
    notes, rows = _said(RunFolder(run, samples))
    table = next(b for b in classification_section(RunFolder(run, samples)).blocks if isinstance(b, Table))
    part = (f"{metrics} is not a metrics file of this project in part (macro_auc, macro_ap, num_failed, per_class "
            "'nodule' auc and 2 more: not values an evaluation writes), so those are left out here; move it away, "
            "then ")
    assert sum(n.startswith(f"CXR classification: {part}") for n in notes) == 1, notes
    assert any(n.startswith(f"Chest X-ray findings (multi-label, DRRs with simulated findings): {part}") for n in notes)
    # the numbers it understands: 12 cases, cardiomegaly's AUC; nothing of the junk as it is
    (summary,) = [r for r in rows if r[0] == "CXR classification"]
    assert summary[1:] == ["test ROC AUC, 12 cases", "macro - (nodule -, cardiomegaly 0.80)"], summary
    assert [r[:4] for r in table.rows] == [
        ["nodule", *(str(good["per_class"][0][k]) for k in ("positives", "negatives")), "-"],
        ["cardiomegaly", *(str(good["per_class"][1][k]) for k in ("positives", "negatives")), "0.800"],
        ["macro", "", "", "-"]]
    assert not any("high" in cell or "nan" in cell.lower() for row in rows for cell in row)
    # the page is written whole: no section lost to the file, the CT classifier's figure still there
    page = report(run, samples=samples).read_text()
    assert "could not be built" not in page and page.count(str(metrics)) >= 2
    assert any(isinstance(b, Figure) and b.name == "roc_ct_classification"
               for b in classification_section(RunFolder(run, samples)).blocks)


def test_the_note_stays_where_the_evaluation_s_predictions_are_gone(tmp_path):
    metrics = tmp_path / "unimiss_ct_classification" / "eval" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"num_cases": "12", "per_class": []}))
    notes = [b.text for b in classification_section(RunFolder(tmp_path)).blocks if isinstance(b, Note)]
    assert any(n.startswith(f"CT classification: {metrics} is not a metrics file of this project in part (num_cases: ")
               for n in notes), notes
    assert any(n.startswith("CT classification: no evaluation in ") for n in notes)
