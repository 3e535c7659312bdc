"""Classification report files and the report handler on an ignite engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from unimiss_monai.handlers import ClassificationReport, write_report
from unimiss_monai.metrics import classification_metrics


def test_write_report_files(tmp_path):
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    m = write_report(tmp_path, probs, np.array([0, 1, 1, 1]), ["clean", "nodule"], names=list("abcd"))
    for name in ["metrics.json", "per_class.csv", "evaluation_predictions.csv", "roc.png", "confusion_matrix.png"]:
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == pytest.approx(m["accuracy"]) == 0.75
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*unimiss-tmp*"))
    assert (tmp_path / "evaluation_predictions.csv").read_text().splitlines()[1].startswith("a,0.900000,0.100000,1,0")


def test_report_handler_through_an_engine(tmp_path):
    rng = np.random.default_rng(0)
    batches = [
        {"pred": [torch.tensor(p) for p in rng.dirichlet([1, 1, 1], 4)], "label": [torch.tensor([float(i % 3)]) for i in range(4)]}
        for _ in range(3)
    ]
    engine = Engine(lambda e, b: b)
    handler = ClassificationReport(tmp_path, ["a", "b", "c"])
    handler.attach(engine)
    engine.run(batches, max_epochs=1)
    probs = torch.stack([p for b in batches for p in b["pred"]]).numpy()
    labels = np.array([int(t) for b in batches for t in b["label"]])
    expected = classification_metrics(probs, labels, ["a", "b", "c"])
    assert handler.metrics["macro_auc"] == pytest.approx(expected["macro_auc"])
    assert (tmp_path / "confusion_matrix.png").exists()
