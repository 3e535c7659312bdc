"""The evaluation reports past a case that failed (unreadable, or its network forward failed): the case is listed
with its reason, the others are scored as they would be alone, and the run ends with an error once the report is
written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from failing_networks import FailsOnNegative
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer
from monai.transforms import Compose, EnsureTyped, LoadImaged

from unimiss_monai.data.tolerant import TolerantDataset
from unimiss_monai.handlers import ClassificationReport, SegmentationReport
from unimiss_monai.handlers.inference_summary import raise_if_failed

LOAD = Compose([LoadImaged("image", ensure_channel_first=True, image_only=True), EnsureTyped("image", dtype=torch.float32)])


def _evaluate(tmp_path, arrays: dict[str, np.ndarray | str], labels: dict[str, float], handler, batch_size: int):
    """Run ``handler`` in an evaluator over ``.npy`` files (a string is written as is: an unreadable file)."""
    data = []
    for name, array in arrays.items():
        if isinstance(array, str):
            (tmp_path / name).write_text(array)
        else:
            np.save(tmp_path / name, np.asarray(array, np.float32))
        data.append({"image": str(tmp_path / name), "label": torch.tensor(labels[name])})
    loader = DataLoader(TolerantDataset(data, LOAD, (1, 8, 8)), batch_size=batch_size, num_workers=0)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=FailsOnNegative(),
                                    inferer=SimpleInferer(), val_handlers=[handler])
    evaluator.run()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_classification_report_lists_a_forward_failure_and_scores_the_others(tmp_path, batch_size):
    arrays = {"p1.npy": np.full((8, 8), 1.0), "neg.npy": np.full((8, 8), -1.0), "p2.npy": np.full((8, 8), 2.0)}
    labels = {"p1.npy": 0.0, "neg.npy": 1.0, "p2.npy": 1.0}
    handler = ClassificationReport(tmp_path / "out", ["x", "y"])
    with pytest.raises(RuntimeError, match=r"^evaluation: 1 of 3 cases failed, listed .* in .*metrics.json; the other 2"):
        _evaluate(tmp_path, arrays, labels, handler, batch_size)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["num_cases"] == 2 and metrics["num_failed"] == 1
    assert metrics["failed"][0]["case"] == str(tmp_path / "neg.npy")
    assert "neg.npy: RuntimeError: negative input" in metrics["failed"][0]["reason"]
    rows = (tmp_path / "out" / "evaluation_predictions.csv").read_text().splitlines()
    assert rows[0] == "name,prob_x,prob_y,true_x,true_y,failed"
    assert [r.split(",")[0] for r in rows[1:3]] == ["p1.npy", "p2.npy"]  # raw scores, as each case alone gives them
    assert rows[1].startswith("p1.npy,1.000000,-1.000000") and rows[2].startswith("p2.npy,2.000000,-2.000000")
    assert rows[1].endswith(",") and len(rows) == 4  # the failed case last, with its reason and no score
    assert rows[3].startswith(f"{tmp_path / 'neg.npy'},,,,,") and "negative input" in rows[3]
    from unimiss_monai.report.sections.classification import read_predictions

    names, classes, probs, _ = read_predictions(tmp_path / "out" / "evaluation_predictions.csv")
    assert names == ["p1.npy", "p2.npy"] and classes == ["x", "y"] and probs.shape == (2, 2)


def test_segmentation_report_with_no_case_worked_lists_them_and_fails(tmp_path):
    handler = SegmentationReport(tmp_path / "out", ["organ"])
    arrays = {"text.npy": "not an array", "neg.npy": np.full((8, 8), -1.0)}
    with pytest.raises(RuntimeError, match=r"^evaluation: no case worked \(2 failed, listed in .*segmentation_report.json"):
        _evaluate(tmp_path, arrays, {"text.npy": 0.0, "neg.npy": 0.0}, handler, 1)
    report = json.loads((tmp_path / "out" / "segmentation_report.json").read_text())
    assert report["num_cases"] == 0 and report["num_failed"] == 2
    assert [f["case"] for f in report["failed"]] == [str(tmp_path / "text.npy"), str(tmp_path / "neg.npy")]
    assert all("\n" not in f["reason"] for f in report["failed"])
    assert "text.npy" in report["failed"][0]["reason"] and "negative input" in report["failed"][1]["reason"]


@pytest.mark.parametrize("multi_label", [False, True])
def test_classification_report_with_no_case_worked_replaces_the_earlier_report(tmp_path, multi_label):
    labels = {"p.npy": [1.0, 0.0] if multi_label else 0.0, "neg.npy": [0.0, 1.0] if multi_label else 1.0}
    _evaluate(tmp_path, {"p.npy": np.full((8, 8), 1.0)}, labels, ClassificationReport(tmp_path / "out", ["x", "y"], multi_label), 1)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["num_cases"] == 1
    earlier = {name: (tmp_path / "out" / name).read_bytes() for name in ("roc.png", "confusion_matrix.png")}
    handler = ClassificationReport(tmp_path / "out", ["x", "y"], multi_label)
    with pytest.raises(RuntimeError, match=r"^evaluation: no case worked \(2 failed, listed in .*metrics.json\)"):
        _evaluate(tmp_path, {"p.npy": "not an array", "neg.npy": np.full((8, 8), -1.0)}, labels, handler, 1)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["num_cases"] == 0 and metrics["num_failed"] == 2
    assert metrics["accuracy"] is None and metrics["macro_auc"] is None and metrics["notes"] == []
    assert all((tmp_path / "out" / name).read_bytes() != png for name, png in earlier.items())  # redrawn, 0 cases
    assert [f["case"] for f in metrics["failed"]] == [str(tmp_path / "p.npy"), str(tmp_path / "neg.npy")]
    rows = (tmp_path / "out" / "evaluation_predictions.csv").read_text().splitlines()
    assert len(rows) == 3 and all(r.startswith(str(tmp_path)) for r in rows[1:])  # no score of the earlier run left
    per_class = (tmp_path / "out" / "per_class.csv").read_text().splitlines()
    assert per_class[1].startswith("x,0,0,")  # counts of the cases scored in this run: none


@pytest.mark.parametrize(("failed", "total", "done", "of", "ending"), [
    (1, 3, "scored", "", "; the other 2 are scored"),
    (1, 2, "scored", "", "; the other case is scored"),
    (2, 3, "written", "the outputs of ", "; the outputs of the other case are written"),
    (1, 4, "written", "the outputs of ", "; the outputs of the other 3 are written"),
])
def test_the_end_of_a_partly_failed_run_counts_the_other_cases_in_words(failed, total, done, of, ending):
    with pytest.raises(RuntimeError) as raised:
        raise_if_failed("evaluation", failed, total, "m.json", done, of)
    assert str(raised.value) == f"evaluation: {failed} of {total} cases failed, listed with the reason and fix in m.json{ending}"
    with pytest.raises(RuntimeError, match=r"^evaluation: no case worked \(2 failed, listed in m.json\)$"):
        raise_if_failed("evaluation", 2, 2, "m.json", done, of)
    raise_if_failed("evaluation", 0, total, "m.json", done, of)  # nothing failed: no error
