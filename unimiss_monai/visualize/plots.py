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


def roc_png(probs: np.ndarray, truth: np.ndarray, metrics: dict) -> bytes:
    """ROC curve of every class whose AUC is defined, over the chance diagonal.

    Args:
        probs: (N, C) scores. truth: (N, C) 0/1 ground truth.
        metrics: :func:`~unimiss_monai.metrics.classification_metrics` of the same data (names, AUCs, case count).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    for c, entry in enumerate(metrics["per_class"]):
        if entry["auc"] is None:
            continue
        fpr, tpr, _ = roc_curve(probs[:, c], truth[:, c])
        ax.plot(fpr, tpr, lw=1.5, label=f"{entry['class']} (AUC {entry['auc']:.3f})")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.02), aspect="equal")
    macro = metrics["macro_auc"]
    ax.set_title(f"ROC, {metrics['num_cases']} cases" + (f", macro AUC {macro:.3f}" if macro is not None else ""))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
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
