"""Paired comparison of two initialisations over seeds: the mean of the per-seed differences and its interval.

Both arms of a seed share the training subset, the training randomness and the test set, so the seed-to-seed spread
that both arms share (an easy subset, a lucky initialisation of the decoder) cancels in the difference. An interval
of the difference is therefore much narrower than two separate intervals of the arms, and it answers the question
directly: when it excludes 0, the arms differ at that confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["clip_interval", "mean_interval", "paired_difference"]


def _t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    # written out (not ttest_rel(...).confidence_interval) so that identical differences give a zero-width interval
    # instead of NaN; tests check it against scipy's ttest_rel
    from scipy import stats

    n = len(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    mean = float(values.mean())
    return mean - half, mean + half


def paired_difference(
    pretrained: Sequence[float],
    scratch: Sequence[float],
    confidence: float = 0.95,
    method: str = "t",
    n_resamples: int = 9999,
    random_state: int = 0,
) -> dict:
    """Mean of ``pretrained[i] - scratch[i]`` with a two-sided interval at ``confidence``.

    Args:
        pretrained, scratch: scores of the two arms, paired by position (the same seed, subset and test set).
        confidence: coverage of the interval, in (0, 1).
        method: ``"t"``: Student's t interval of the mean difference (``scipy.stats.t``; equals
            ``scipy.stats.ttest_rel(pretrained, scratch).confidence_interval``); ``"bootstrap"``: percentile
            bootstrap of the mean difference (``scipy.stats.bootstrap``, ``n_resamples`` resamples drawn with the
            fixed ``random_state``, so the interval is reproducible).

    Returns:
        ``{"mean", "ci_low", "ci_high", "includes_zero", "n", "method", "confidence", "differences"}``, in the
        scores' units. ``includes_zero`` is True when the interval contains 0, i.e. the data do not show a
        difference at this confidence.

    Raises:
        ValueError: unequal lengths, fewer than 2 pairs (one pair has no spread, hence no interval), a non-finite
        score, or an unknown ``method``.
    """
    a, b = np.asarray(pretrained, dtype=float), np.asarray(scratch, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_difference: the arms must be paired one to one, got {a.shape} and {b.shape} scores")
    if len(a) < 2:
        raise ValueError(f"paired_difference: {len(a)} pair(s); an interval needs at least 2 (run more seeds)")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_difference: non-finite score; a failed run must be left out of both arms")
    if not 0 < confidence < 1:
        raise ValueError(f"paired_difference: confidence must be in (0, 1), got {confidence}")
    diff = a - b
    if method == "t":
        low, high = _t_interval(diff, confidence)
    elif method == "bootstrap":
        from scipy import stats

        if np.ptp(diff) == 0:  # every resample has the same mean: the interval is that point
            low = high = float(diff[0])
        else:
            res = stats.bootstrap((diff,), np.mean, confidence_level=confidence, n_resamples=int(n_resamples),
                                  method="percentile", random_state=np.random.default_rng(random_state))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    else:
        raise ValueError(f"paired_difference: method must be 't' or 'bootstrap', got {method!r}")
    return {"mean": float(diff.mean()), "ci_low": low, "ci_high": high, "includes_zero": bool(low <= 0.0 <= high),
            "n": int(len(diff)), "method": method, "confidence": float(confidence),
            "differences": [float(d) for d in diff]}


def mean_interval(scores: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean, sample standard deviation and a t interval of the mean of one arm's scores over seeds (the interval
    is ``None`` for a single score). For the comparison of two arms use :func:`paired_difference`."""
    arr = np.asarray(scores, dtype=float)
    if arr.size == 0:
        raise ValueError("mean_interval: no scores")
    if arr.size < 2:
        return {"mean": float(arr.mean()), "std": None, "ci_low": None, "ci_high": None, "n": 1}
    low, high = _t_interval(arr, confidence)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)), "ci_low": low, "ci_high": high,
            "n": int(arr.size)}


def clip_interval(entry: dict, low: float, high: float) -> dict:
    """``entry`` (a :func:`mean_interval` or :func:`paired_difference` result) with its interval cut to the range
    ``[low, high]`` that the quantity cannot leave (0-1 for a score, -1 to 1 for a difference of two scores).

    A few seeds give a t interval wider than that range (2 seeds: 12.7 standard errors each side), e.g. [-0.14, 1.06]
    for an AUC. The true value lies in the range, so the cut interval covers it whenever the whole one does: the
    same confidence, no narrower in any honest sense. A cut interval says so: ``clipped_to`` holds the range and
    ``unclipped`` the interval as computed; an interval inside the range is returned unchanged.
    """
    ci_low, ci_high = entry.get("ci_low"), entry.get("ci_high")
    if ci_low is None or ci_high is None or (ci_low >= low and ci_high <= high):
        return entry
    return {**entry, "ci_low": max(float(ci_low), low), "ci_high": min(float(ci_high), high),
            "clipped_to": [low, high], "unclipped": [float(ci_low), float(ci_high)]}
