"""The study's figure: test score against label fraction per arm (mean and every seed), and beside it the paired
difference of each arm against scratch with its interval, against the zero line. Built like the package's other
report figures (:mod:`unimiss_monai.visualize.plots`): a bare ``matplotlib.figure.Figure``, no pyplot state."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from unimiss_monai.benchmarks.label_efficiency.tasks import scored_items
from unimiss_monai.visualize.plots import figure_png

__all__ = ["label_efficiency_png"]


def label_efficiency_png(results: Mapping) -> bytes:
    """PNG bytes of the figure of :func:`~unimiss_monai.benchmarks.label_efficiency.study.build_results` output."""
    from matplotlib.figure import Figure

    metric = results.get("metric", "score")
    fractions = [float(f) for f in results["fractions"]]
    arms = list(results["arms"])
    # a study of scratch alone has no paired difference: its curve alone, not beside an empty panel
    paired = len(arms) > 1
    fig = Figure(figsize=(9.6, 3.8) if paired else (4.8, 3.8))
    ax = fig.add_subplot(1, 2 if paired else 1, 1)
    colours = {arm: f"C{i}" for i, arm in enumerate(arms)}
    # arms side by side at each fraction (a few percent apart on the log axis) so seed points do not hide each other
    offset = {arm: 1.0 + 0.04 * (i - (len(arms) - 1) / 2) for i, arm in enumerate(arms)}
    for arm in arms:
        per_fraction = results["results"].get(arm, {})
        xs = [f for f in fractions if f"{f:g}" in per_fraction]
        if not xs:
            continue
        means = [per_fraction[f"{f:g}"]["mean"] for f in xs]
        ax.plot([x * offset[arm] for x in xs], means, "-o", color=colours[arm], lw=1.5, ms=5, label=arm)
        for x in xs:
            seeds = list(per_fraction[f"{x:g}"]["per_seed"].values())
            ax.plot(np.full(len(seeds), x * offset[arm]), seeds, ".", color=colours[arm], alpha=0.45, ms=5)
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set(xlabel="fraction of training labels", ylabel=f"{scored_items(results.get('split', 'test'))[1]} {metric}",
           title=f"{results.get('bundle', '')}: mean (line) and seeds (dots)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)

    if paired:
        _differences(fig.add_subplot(1, 2, 2), results, fractions, colours, offset, metric)
    fig.tight_layout()
    return figure_png(fig)


def _differences(dx, results: Mapping, fractions: list, colours: dict, offset: dict, metric: str) -> None:
    """The right panel: each arm's per-seed differences against scratch, their mean and interval."""
    confidence = results.get("interval", {}).get("confidence", 0.95)
    dx.axhline(0.0, color="grey", lw=1, ls=":")
    for arm, per_fraction in results.get("paired_differences", {}).items():
        xs = [f for f in fractions if per_fraction.get(f"{f:g}", {}).get("mean") is not None]
        for x in xs:
            d = per_fraction[f"{x:g}"]
            xp = x * offset[arm]
            if d["ci_low"] is not None:
                dx.errorbar([xp], [d["mean"]], yerr=[[d["mean"] - d["ci_low"]], [d["ci_high"] - d["mean"]]],
                            fmt="o", color=colours[arm], capsize=3, ms=5)
            else:
                dx.plot([xp], [d["mean"]], "o", mfc="none", color=colours[arm], ms=5)
            dx.plot(np.full(len(d["differences"]), xp), d["differences"], ".", color=colours[arm], alpha=0.45, ms=5)
        if xs:
            dx.plot([], [], "o", color=colours[arm], label=f"{arm} - {results.get('reference', 'scratch')}")
    dx.set_xscale("log")
    dx.set_xticks(fractions, [f"{f:g}" for f in fractions])
    dx.minorticks_off()
    dx.set(xlabel="fraction of training labels", ylabel=f"paired difference in {metric}",
           title=f"paired difference per seed (dots), mean and {confidence:.0%} interval")
    dx.title.set_fontsize(9)
    if dx.get_legend_handles_labels()[0]:
        dx.legend(fontsize=8)
