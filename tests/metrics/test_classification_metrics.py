"""Classification metrics against hand computations and independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unimiss_monai.metrics import MacroAUCMetric, average_precision, classification_metrics, roc_auc, roc_curve


def test_auc_hand_computed():
    # positives 0.8, 0.4; negatives 0.6, 0.2: pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2) -> 3/4
    assert roc_auc([0.8, 0.6, 0.4, 0.2], [1, 0, 1, 0]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: (1 + 0.5) / 2
    assert roc_auc([0.9, 0.5, 0.5], [1, 1, 0]) == pytest.approx(0.75)
    assert roc_auc([0.1, 0.2, 0.3], [1, 0, 0]) == pytest.approx(0.0)


def test_ap_hand_computed():
    # ranked: 0.9(+) 0.8(-) 0.7(+) 0.1(-): recall steps 1/2 at precision 1, 1/2 at precision 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # tied scores form one threshold: both at 0.5 -> precision 1/2 at recall 1
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)


def test_roc_curve_points():
    fpr, tpr, thr = roc_curve([0.8, 0.6, 0.4, 0.2], [1, 0, 1, 0])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1.0, 1.0])
    assert np.isinf(thr[0])
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_independent_references(seed):
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(40), 1)  # rounding makes ties
    targets = (rng.random(40) < 0.4).astype(int)
    u = mannwhitneyu(scores[targets == 1], scores[targets == 0]).statistic
    assert roc_auc(scores, targets) == pytest.approx(u / (targets.sum() * (1 - targets).sum()))
    # brute-force AP: mean over positives of precision at that positive's threshold (ties included)
    ap = np.mean([(targets[scores >= s]).mean() for s in scores[targets == 1]])
    # the mean-over-positives form equals the stepwise sum when every threshold group is counted once per positive
    assert average_precision(scores, targets) == pytest.approx(ap)
    fpr, tpr, _ = roc_curve(scores, targets)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(scores, targets))


def test_multiclass_metrics_hand_computed():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.05, 0.45, 0.5], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 2, 1])
    m = classification_metrics(probs, labels, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    b = m["per_class"][1]
    assert (b["sensitivity"], b["specificity"]) == (pytest.approx(0.5), pytest.approx(1.0))
    # one-vs-rest: "a" 0.7 beats 0.2, 0.05, 0.5; "b" 0.5 and 0.4 beat 0.2, and of 0.45 only 0.5 does (3 of 4 pairs);
    # "c" 0.5 beats 0.1, 0.3, 0.1
    assert [p["auc"] for p in m["per_class"]] == [pytest.approx(1.0), pytest.approx(0.75), pytest.approx(1.0)]
    assert m["macro_auc"] == pytest.approx(2.75 / 3)


def test_multilabel_threshold_and_undefined_class():
    probs = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.1]])
    labels = np.array([[1, 0], [0, 0], [1, 0]])  # class "y" has no positive case
    m = classification_metrics(probs, labels, ["x", "y"], multi_label=True, threshold=0.5)
    x, y = m["per_class"]
    assert x["auc"] == pytest.approx(1.0) and x["sensitivity"] == 1.0 and x["specificity"] == 1.0
    assert y["auc"] is None and y["ap"] is None and y["sensitivity"] is None
    assert y["specificity"] == pytest.approx(2 / 3)  # 0.7 >= 0.5 is one false positive of three
    assert m["macro_auc"] == pytest.approx(1.0)  # over the defined class only
    assert any("'y'" in n and "undefined" in n for n in m["notes"])
    assert m["accuracy"] == pytest.approx(5 / 6) and m["exact_match"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"][1] == [[2, 1], [0, 0]]


def test_macro_ap_is_over_the_classes_of_the_macro_auc():
    # a class every case has: its AP is 1 whatever the scores, and its AUC undefined; in the macro AP alone it raised
    # the figure printed beside the macro AUC
    probs = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.9], [0.6, 0.4, 0.1], [0.2, 0.7, 0.3]])
    labels = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]])
    m = classification_metrics(probs, labels, ["x", "y", "z"], multi_label=True)
    x, y, z = m["per_class"]
    assert z["ap"] == 1.0 and z["auc"] is None
    assert m["macro_ap"] == pytest.approx((average_precision(probs[:, 0], labels[:, 0])
                                           + average_precision(probs[:, 1], labels[:, 1])) / 2)
    # x: positives 0.9 and 0.2 against 0.3 and 0.6, 2 of 4 pairs; y: 0.8 and 0.7 beat 0.1 and 0.4
    assert (x["auc"], y["auc"], m["macro_auc"]) == (pytest.approx(0.5), pytest.approx(1.0), pytest.approx(0.75))


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"probs must be \(N, 2\)"):
        classification_metrics(np.zeros((3, 3)), np.zeros(3), ["a", "b"])
    with pytest.raises(ValueError, match="do not match 2 classes"):
        classification_metrics(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"], multi_label=True)
    with pytest.raises(ValueError, match="out of range"):
        classification_metrics(np.zeros((2, 2)), np.array([0, 5]), ["a", "b"])


def test_macro_auc_metric_skips_undefined_class():
    metric = MacroAUCMetric(multi_label=True)
    metric([torch.tensor([0.9, 0.3]), torch.tensor([0.2, 0.6])], [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])])
    assert metric.aggregate() == pytest.approx(1.0)


def test_nan_scores_are_refused():
    # NaN sorted last and counted as the top score: AUC 0.5 and AP 1.0 here, which look like real numbers
    scores, targets = [float("nan"), 0.2, 0.8, 0.1], [0, 1, 1, 0]
    for fn in (roc_auc, average_precision, roc_curve):
        with pytest.raises(ValueError, match="1 NaN value"):
            fn(scores, targets)
    metric = MacroAUCMetric()
    metric(torch.tensor([[float("nan"), 0.5], [0.2, 0.8]]), torch.tensor([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        metric.aggregate()
    # infinite scores still rank (an overflowing logit)
    assert roc_auc([float("inf"), 0.2, -float("inf")], [1, 0, 0]) == pytest.approx(1.0)


def test_exclusive_one_hot_rows_must_mark_one_class():
    probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    # a row of zeros was filed under class 0 by arg-max: accuracy 1.0 for a case that has no class
    with pytest.raises(ValueError, match=r"exactly one class per case; rows \[0\] mark \[0\]"):
        classification_metrics(probs, np.array([[0, 0], [0, 1], [1, 0]]), ["a", "b"])
    with pytest.raises(ValueError, match=r"rows \[2\] mark \[2\]"):
        classification_metrics(probs, np.array([[1, 0], [0, 1], [1, 1]]), ["a", "b"])
    ok = classification_metrics(probs, np.array([[1, 0], [0, 1], [1, 0]]), ["a", "b"])
    assert ok == classification_metrics(probs, np.array([0, 1, 0]), ["a", "b"])
    # the same rows are fine as multi-hot labels
    assert classification_metrics(probs, np.array([[0, 0], [0, 1], [1, 1]]), ["a", "b"], multi_label=True)["num_cases"] == 3
