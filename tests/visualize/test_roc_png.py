"""``roc_png``, the one ROC picture (classification handlers and the run report): each column is drawn under its own
name with the AUC of that name, whatever order the metrics list the classes in; a class without both positives and
negatives gets no curve."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

import unimiss_monai.visualize.plots as plots


def _drawn(monkeypatch, *args, **kwargs):
    """The figure ``roc_png`` would save."""
    figures = []
    monkeypatch.setattr(plots, "figure_png", lambda fig: figures.append(fig) or b"")
    plots.roc_png(*args, **kwargs)
    return figures[0].axes[0]


def test_curves_carry_their_own_names_and_aucs(monkeypatch):
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], float)
    probs = np.array([[0.9, 0.2, 0.1], [0.8, 0.4, 0.3], [0.1, 0.7, 0.2], [0.2, 0.6, 0.4]])  # "a" separated, "b" not
    metrics = {"per_class": [{"class": "never", "auc": None}, {"class": "b", "auc": 0.5}, {"class": "a", "auc": 1.0}],
               "macro_auc": 0.75, "num_cases": 4}  # listed in another order than the columns
    ax = _drawn(monkeypatch, probs, truth, metrics, classes=["a", "b", "never"], title="CT: 4 test cases")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["a (AUC 1.000)", "b (AUC 0.500)", "chance"]  # no curve for a class of negatives only
    fpr, tpr = lines["a (AUC 1.000)"].get_data()
    assert any(f == 0 and t == 1 for f, t in zip(fpr, tpr))  # the separated class reaches the top-left corner
    assert ax.get_title() == "CT: 4 test cases"


def test_default_names_and_title_come_from_the_metrics(monkeypatch):
    truth = np.array([[1.0], [0.0], [1.0], [0.0]])
    probs = np.array([[0.7], [0.6], [0.4], [0.1]])
    metrics = {"per_class": [{"class": "nodule", "auc": 0.75}], "macro_auc": 0.75, "num_cases": 4}
    ax = _drawn(monkeypatch, probs, truth, metrics)
    assert [line.get_label() for line in ax.get_lines()] == ["chance", "nodule (AUC 0.750)"]
    assert ax.get_title() == "ROC, 4 cases, macro AUC 0.750"
    monkeypatch.undo()
    with Image.open(io.BytesIO(plots.roc_png(probs, truth, metrics))) as png:  # and it is a picture
        assert png.format == "PNG" and min(png.size) > 100


def test_no_scored_case_draws_the_chance_line_alone(monkeypatch):
    """An evaluation where every case failed still writes its pictures."""
    metrics = {"per_class": [{"class": "a", "auc": None}], "macro_auc": None, "num_cases": 0}
    ax = _drawn(monkeypatch, np.zeros((0, 1)), np.zeros((0, 1)), metrics)
    assert [line.get_label() for line in ax.get_lines()] == ["chance"] and ax.get_title() == "ROC, 0 cases"
