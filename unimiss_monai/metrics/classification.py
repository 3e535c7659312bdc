"""Classification metrics for multi-class (exclusive) and multi-label findings, and a MONAI metric of the macro AUC.

The ranking metrics are written out here rather than taken from scikit-learn (not a dependency):

- ROC AUC is the Mann-Whitney statistic: the probability that a random positive scores above a random negative,
  ties counting one half (average ranks).
- Average precision is the step-wise area under the precision-recall curve, ``sum_n (R_n - R_{n-1}) P_n`` over
  the distinct score thresholds, highest first (the definition scikit-learn uses, no interpolation).

A class with no positive (or no negative) case in a split has no ROC AUC; it is reported as ``null`` with a note,
and the macro average is taken over the classes where it is defined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

__all__ = [
    "MacroAUC",
    "MacroAUCMetric",
    "as_numpy",
    "average_precision",
    "classification_metrics",
    "roc_auc",
    "roc_curve",
    "stack_pairs",
    "to_indicator",
]


def as_numpy(x) -> np.ndarray:
    """A tensor (any device) or array-like as a float numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_binary(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, targets = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(targets).ravel()
    if scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must have the same length")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("targets must be 0/1 for a binary ranking metric; convert class indices to one-hot first")
    n_nan = int(np.isnan(scores).sum())
    if n_nan:  # NaN has no rank: sorted last, it would count as the highest score and give a plausible-looking value
        raise ValueError(f"scores hold {n_nan} NaN value(s) of {scores.size}; a model that outputs NaN has no ranking to score")
    return scores, targets.astype(bool)


def roc_curve(scores, targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of one binary problem.

    Args:
        scores: (N,) scores, higher means more likely positive.
        targets: (N,) 0/1 ground truth.

    Returns:
        ``(fpr, tpr, thresholds)``, each (T+1,), starting at (0, 0) with threshold ``+inf``; one point per distinct
        score. ``fpr`` (``tpr``) is NaN where the split has no negatives (positives).
    """
    scores, targets = _check_binary(scores, targets)
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], dtype=int)
    tps, fps = np.cumsum(t)[last_of_tie], np.cumsum(~t)[last_of_tie]
    n_pos, n_neg = t.sum(), (~t).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tps] / n_pos if n_pos else np.full(tps.size + 1, np.nan)
        fpr = np.r_[0.0, fps] / n_neg if n_neg else np.full(fps.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s[last_of_tie]]


def roc_auc(scores, targets) -> float:
    """Area under the ROC curve of one binary problem (NaN when one of the two classes is absent).

    Args:
        scores: (N,) scores. targets: (N,) 0/1 ground truth.
    """
    scores, targets = _check_binary(scores, targets)
    n_pos, n_neg = int(targets.sum()), int((~targets).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # average ranks (1-based) so that tied scores count one half
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], scores.size]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[targets].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores, targets) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` of one binary problem (NaN when there is no positive).

    Args:
        scores: (N,) scores. targets: (N,) 0/1 ground truth.
    """
    scores, targets = _check_binary(scores, targets)
    n_pos = int(targets.sum())
    if n_pos == 0:
        return float("nan")
    _, tpr, _ = roc_curve(scores, targets)
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], targets[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(t)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    return float(np.sum(np.diff(tpr) * precision))


def to_indicator(labels: np.ndarray, num_classes: int, multi_label: bool) -> np.ndarray:
    """(N,) class indices or (N, C) one-hot / multi-hot -> (N, C) 0/1 (``ValueError`` when they cannot match C, or
    when an exclusive one-hot row marks no class or several)."""
    if labels.ndim == 2 and labels.shape[1] == num_classes:
        indicator = (labels > 0.5).astype(np.int64)
        if not multi_label and num_classes > 1:
            # an exclusive case has exactly one class; arg-max would silently file a row of zeros under class 0
            bad = np.flatnonzero(indicator.sum(1) != 1)
            if bad.size:
                raise ValueError(f"exclusive one-hot labels must mark exactly one class per case; rows {bad[:8].tolist()} "
                                 f"mark {indicator[bad[:8]].sum(1).tolist()} (use multi_label for multi-hot labels)")
        return indicator
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 1 and not multi_label:
        idx = labels.astype(np.int64)
        if idx.min(initial=0) < 0 or idx.max(initial=0) >= num_classes:
            raise ValueError(f"class index out of range [0, {num_classes}): {sorted(set(idx.tolist()))}")
        return np.eye(num_classes, dtype=np.int64)[idx]
    raise ValueError(f"labels of shape {labels.shape} do not match {num_classes} classes; give (N,) class indices or (N, {num_classes}) 0/1")


def classification_metrics(
    probs, labels, class_names: Sequence[str], multi_label: bool = False, threshold: float = 0.5
) -> dict:
    """Accuracy, per-class and macro ROC AUC / average precision, sensitivity and specificity.

    Args:
        probs: (N, C) class probabilities (softmax for exclusive classes, sigmoid for multi-label).
        labels: (N,) class indices or (N, C) one-hot (exclusive), or (N, C) multi-hot (multi-label).
        class_names: C names, in channel order.
        multi_label: each class is its own yes/no finding (decided by ``probs >= threshold``); otherwise the
            classes are exclusive and the prediction is the arg-max (``threshold`` is then unused).
        threshold: operating point of sensitivity/specificity for multi-label findings. Defaults to 0.5.

    Returns:
        A JSON-ready dict: ``accuracy``, ``macro_auc``, ``macro_ap`` (both over the classes with positive and negative
        cases), ``per_class`` (list of dicts with ``auc``, ``ap``, ``sensitivity``, ``specificity``, ``positives``,
        ``negatives``), ``confusion_matrix`` (C x C for
        exclusive classes, C x 2 x 2 ``[[tn, fp], [fn, tp]]`` for multi-label), ``notes`` (undefined metrics) and,
        for multi-label, ``exact_match``. Undefined values are ``None``.
    """
    probs = as_numpy(probs)
    num_classes = len(class_names)
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"probs must be (N, {num_classes}) for classes {list(class_names)}, got {probs.shape}")
    truth = to_indicator(as_numpy(labels), num_classes, multi_label)
    if truth.shape[0] != probs.shape[0]:
        raise ValueError(f"{probs.shape[0]} predictions but {truth.shape[0]} labels")
    if multi_label:
        decided = (probs >= threshold).astype(np.int64)
    else:
        decided = np.eye(num_classes, dtype=np.int64)[probs.argmax(1)] if len(probs) else np.zeros_like(truth)
    notes, per_class = [], []
    for c, name in enumerate(class_names):
        t, d = truth[:, c].astype(bool), decided[:, c].astype(bool)
        tp, fn, fp, tn = int((t & d).sum()), int((t & ~d).sum()), int((~t & d).sum()), int((~t & ~d).sum())
        auc, ap = roc_auc(probs[:, c], t), average_precision(probs[:, c], t)
        if math.isnan(auc) and len(probs):  # with no case scored, nothing is defined: no note per class
            notes.append(f"class {name!r}: {tp + fn} positive / {tn + fp} negative cases in this split, so its ROC AUC "
                         "is undefined (and it is left out of the macro AUC and AP)")
        per_class.append({
            "class": name, "positives": tp + fn, "negatives": tn + fp,
            "auc": _nan_to_none(auc), "ap": _nan_to_none(ap),
            "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None,
            "tp": tp, "fn": fn, "fp": fp, "tn": tn,
        })
    aucs = [p["auc"] for p in per_class if p["auc"] is not None]
    # of the same classes as the AUCs: a class with no negative case has an AP of 1 whatever the scores, which would
    # raise the macro AP beside a macro AUC that leaves that class out
    aps = [p["ap"] for p in per_class if p["ap"] is not None and p["auc"] is not None]
    out = {
        "num_cases": int(probs.shape[0]),
        "multi_label": bool(multi_label),
        "threshold": float(threshold) if multi_label else None,
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "macro_ap": float(np.mean(aps)) if aps else None,
        "per_class": per_class,
        "notes": notes,
    }
    if multi_label:
        out["accuracy"] = float((decided == truth).mean()) if truth.size else None
        out["exact_match"] = float((decided == truth).all(1).mean()) if truth.size else None
        out["confusion_matrix"] = [[[p["tn"], p["fp"]], [p["fn"], p["tp"]]] for p in per_class]
    else:
        true_idx, pred_idx = truth.argmax(1), decided.argmax(1)
        out["accuracy"] = float((true_idx == pred_idx).mean()) if truth.size else None
        cm = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(cm, (true_idx, pred_idx), 1)
        out["confusion_matrix"] = cm.tolist()
    return out


def _nan_to_none(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def stack_pairs(y_pred, y) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-first tensors or lists of per-case tensors -> (N, C) predictions and (N, L) labels, as float."""
    pred = torch.stack([torch.as_tensor(p) for p in y_pred]) if isinstance(y_pred, (list, tuple)) else torch.as_tensor(y_pred)
    lab = torch.stack([torch.as_tensor(t) for t in y]) if isinstance(y, (list, tuple)) else torch.as_tensor(y)
    return pred.reshape(pred.shape[0], -1).float(), lab.reshape(lab.shape[0], -1).float()


class MacroAUCMetric(CumulativeIterationMetric):
    """Macro ROC AUC over the classes where it is defined (MONAI cumulative metric; NaN only if none is).

    Unlike ``monai.metrics.ROCAUCMetric(average="macro")``, a class absent from the validation split does not turn
    the mean into NaN, so the key metric still selects the best checkpoint.

    Args:
        multi_label: labels are (N, C) multi-hot; otherwise (N,)/(N, 1) indices or (N, C) one-hot.
    """

    def __init__(self, multi_label: bool = False) -> None:
        super().__init__()
        self.multi_label = multi_label

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return y_pred, y

    def aggregate(self) -> float:  # type: ignore[override]
        y_pred, y = self.get_buffer()
        pred, lab = stack_pairs(y_pred, y)
        truth = to_indicator(lab.cpu().numpy(), pred.shape[1], self.multi_label)
        aucs = [roc_auc(pred[:, c].cpu().numpy(), truth[:, c]) for c in range(pred.shape[1])]
        defined = [a for a in aucs if not math.isnan(a)]
        return float(np.mean(defined)) if defined else float("nan")


def MacroAUC(multi_label: bool = False, output_transform: Callable = lambda x: x):  # noqa: N802 - a handler factory named like one
    """Ignite metric handler of :class:`MacroAUCMetric` (for ``key_metric`` / ``additional_metrics``)."""
    from monai.handlers import IgniteMetricHandler

    return IgniteMetricHandler(metric_fn=MacroAUCMetric(multi_label), output_transform=output_transform, save_details=False)
