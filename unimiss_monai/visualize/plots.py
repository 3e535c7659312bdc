"""Report figures as PNG bytes: ROC curves and confusion matrices (written by the report handlers).

Figures are built on ``matplotlib.figure.Figure`` directly: no pyplot state, so they work on headless machines and
in threads without ``matplotlib.use``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from unimiss_monai.metrics.classification import roc_curve

__all__ = ["confusion_png", "figure_png", "roc_png"]


def figure_png(fig, dpi: int = 110, tight: bool = True) -> bytes:
    """The PNG bytes of a matplotlib figure (``tight`` crops the white margin), on white whatever the user's
    matplotlib style."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None, facecolor="white")
    return buf.getvalue()


def roc_png(probs: np.ndarray, truth: np.ndarray, metrics: dict, classes: Sequence[str] | None = None,
            title: str | None = None) -> bytes:
    """ROC curve of every class whose ROC is defined (it has positives and negatives), over the chance diagonal; the
    one ROC picture of the package (the classification handlers' ``roc.png`` and the run report).

    Args:
        probs: (N, C) scores. truth: (N, C) 0/1 ground truth.
        metrics: :func:`~unimiss_monai.metrics.classification_metrics` of the same data (names, AUCs, case count).
        classes: the names of the C columns; default: the names of ``metrics["per_class"]``, in their order. AUCs
            are looked up by name, so a prediction file whose columns come in another order is drawn right.
        title: default ``"ROC, <N> cases, macro AUC <x>"``.
    """
    from matplotlib.figure import Figure

    aucs = {e.get("class"): e.get("auc") for e in metrics.get("per_class", [])}
    names = list(classes) if classes is not None else list(aucs)
    fig = Figure(figsize=(4.8, 4.4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1, label="chance")
    for c, name in enumerate(names):
        if not len(truth) or truth[:, c].min() == truth[:, c].max():
            continue  # no ROC without both positives and negatives
        fpr, tpr, _ = roc_curve(probs[:, c], truth[:, c])
        auc = aucs.get(name)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {auc:.3f})" if auc is not None else str(name))
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.02), aspect="equal")
    if title is None:
        macro = metrics.get("macro_auc")
        title = f"ROC, {metrics.get('num_cases', len(probs))} cases" + (f", macro AUC {macro:.3f}" if macro is not None
                                                                         else "")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def confusion_png(metrics: dict, class_names: Sequence[str]) -> bytes:
    """The confusion matrix of exclusive classes (C x C), or one 2 x 2 matrix per multi-label finding.

    Args:
        metrics: :func:`~unimiss_monai.metrics.classification_metrics` output (``confusion_matrix``, ``multi_label``).
        class_names: the C class names.
    """
    from matplotlib.figure import Figure

    def draw(ax, cm: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> None:
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set(xticks=range(len(cols)), yticks=range(len(rows)), xlabel="predicted", ylabel="true", title=title)
        ax.set_xticklabels(cols, rotation=30, ha="right")
        ax.set_yticklabels(rows)

    if metrics["multi_label"]:
        n = len(class_names)
        fig = Figure(figsize=(2.8 * n, 2.9))
        for c, name in enumerate(class_names):
            draw(fig.add_subplot(1, n, c + 1), np.asarray(metrics["confusion_matrix"][c]), ["no", "yes"], ["no", "yes"], name)
    else:
        fig = Figure(figsize=(1.2 * len(class_names) + 2.4, 1.1 * len(class_names) + 2.0))
        draw(fig.add_subplot(), np.asarray(metrics["confusion_matrix"]), class_names, class_names, "confusion matrix")
    fig.tight_layout()
    return figure_png(fig)
