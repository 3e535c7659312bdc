"""The study as Markdown: the set-up, a table of scores and paired differences per fraction, and the plain
conclusions, for a bundle's docs (``label_efficiency.md`` beside the JSON)."""

from __future__ import annotations

from collections.abc import Mapping

from unimiss_monai.benchmarks.label_efficiency.tasks import scored_items

__all__ = ["results_markdown"]


def _score(entry: Mapping | None) -> str:
    if not entry:
        return "-"
    sd = f" ± {entry['std']:.3f}" if entry.get("std") is not None else ""
    return f"{entry['mean']:.3f}{sd}"


def _difference(d: Mapping | None) -> str:
    if not d or d.get("mean") is None:
        return "-"
    if d.get("ci_low") is None:
        return f"{d['mean']:+.3f} (no interval, n={d['n']})"
    flag = "; includes 0" if d["includes_zero"] else ""
    cut = "*" if d.get("clipped_to") else ""
    return f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]{cut}{flag}"


def results_markdown(results: Mapping) -> str:
    """Markdown of :func:`~unimiss_monai.benchmarks.label_efficiency.study.build_results` output."""
    metric, arms, reference = results["metric"], results["arms"], results["reference"]
    conf = results["interval"]["confidence"]
    others = arms[1:]
    scored, score = scored_items(results.get("split", "test"))
    if others:
        compared = (f"Difference: {', '.join(f'{a} - {reference}' for a in others)}, mean of the per-seed differences "
                    f"with its {conf:.0%} {results['interval']['method']} interval.")
    else:  # nothing to pair with: the table is scratch's learning curve, and says so instead of an empty column
        compared = (f"No paired difference: --arms holds {reference} alone, so this study is its learning curve; "
                    f"a study with --arms {reference},pretrained into the same --out keeps these runs and adds the "
                    "comparison.")
    header = ["fraction (labelled items)", *arms, *(f"{a} - {reference}" for a in others)]
    lines = [
        f"Command: `{results.get('command', '')}`",
        "",
        f"Seeds {results['seeds']}; every arm trains on the same subset with the same seed for a (fraction, seed) and "
        f"is scored on the same {scored}. Score: {score} {metric} (0-1), mean ± standard deviation over seeds. "
        + compared,
        "",
        "| " + " | ".join(header) + " |",
        "|---" * len(header) + "|",
    ]
    for f in results["fractions"]:
        key = f"{f:g}"
        entries = [results["results"].get(a, {}).get(key) for a in arms]
        labels = next((e["num_labels"] for e in entries if e), None)
        cells = [f"{key} ({labels if labels is not None else '?'})", *map(_score, entries),
                 *(_difference(results["paired_differences"].get(a, {}).get(key)) for a in others)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for a in others:
        for f in results["fractions"]:
            d = results["paired_differences"].get(a, {}).get(f"{f:g}")
            if d:
                lines.append(f"- fraction {f:g}: {d['conclusion']}.")
    if any(d.get("clipped_to") for per_fraction in results["paired_differences"].values()
           for d in per_fraction.values()):
        lines.append(f"- \\* the interval reached past the -1 to 1 that a difference of two 0-1 scores can take and "
                     f"is cut to it (as computed: `unclipped` in the JSON); {len(results['seeds'])} seeds give "
                     "intervals this wide, 5 or more give one worth reading.")
    copies = [r for r in results.get("runs", []) if r.get("same_run_as")]
    if copies:
        lines.append(f"- {len(copies)} run(s) drew the same subset with the same seed and arm as a run of another "
                     "fraction: trained once, the score counted under each fraction (`same_run_as` in the JSON).")
    if not results.get("complete", True):
        lines.append(f"- Incomplete: {len(results['failures'])} run(s) failed or are missing; see `runs` in the JSON.")
    if results.get("proxy"):
        lines += ["", f"Proxy: {results['proxy']}"]
    return "\n".join(lines) + "\n"
