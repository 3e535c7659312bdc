"""Label-efficiency section: scratch against pretrained at several label fractions, when a study is in the run."""

from __future__ import annotations

import math
import shlex

from ..document import Figure, Note, Paragraph, Section, Table, fmt
from ..run_folder import RunFolder, read_json

__all__ = ["label_efficiency_section"]


def _signed(value) -> str:
    """``+0.050`` for a difference; ``-`` when it is missing or not finite (a fraction without a complete pair)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{v:+.3f}" if math.isfinite(v) else "-"


def _paired_rows(data: dict) -> list[list[str]]:
    """One row per arm and fraction: every arm against the reference (``paired_differences``, arm -> fraction ->
    difference), or the headline arm alone in a study that holds only ``paired_difference``."""
    by_arm = data.get("paired_differences")
    if not isinstance(by_arm, dict) or not by_arm:
        headline = data.get("paired_difference") or {}
        by_arm = {None: headline} if isinstance(headline, dict) else {}
    rows = []
    for arm, per_fraction in by_arm.items():
        for fraction, d in (per_fraction or {}).items():
            if not isinstance(d, dict):
                continue
            interval = (_interval([d.get("ci_low"), d.get("ci_high")], d.get("clipped_to"), -1.0, 1.0)[0]
                        if d.get("ci_low") is not None
                        else f"- ({d.get('n', '?')} complete pair(s))" if d.get("n") is not None else "-")
            rows.append([str(d.get("arm") or arm or "pretrained"), str(fraction), _signed(d.get("mean")), interval,
                         str(d.get("conclusion", ""))])
    return rows


def label_efficiency_section(run: RunFolder) -> Section:
    section = Section("label-efficiency", "Label efficiency")
    found = run.find("label_efficiency.json") + run.find("*/label_efficiency.json") + run.find("*/*/label_efficiency.json")
    if not found:
        return section.add(Note(_study_hint(run)))
    for path in found[:3]:
        data = read_json(path) or {}
        metric = data.get("metric", "score")
        confidence = (data.get("interval") or {}).get("confidence", 0.95)
        level = f"{float(confidence):.0%}".replace("%", " %")
        section.add(Paragraph(f"{data.get('bundle', path.parent.name)}: test {metric} against the fraction of "
                              f"training labels, {_count(data.get('seeds'))} seeds per point ({path})."))
        # a study of scratch alone (benchmarks/label_efficiency/plot.py) draws its curve without a difference panel
        alone = len(data.get("arms") or []) == 1
        png = path.with_suffix(".png")
        if png.is_file():
            section.add(Figure(png.read_bytes(), name="label_efficiency",
                               alt=f"Test {metric} against label fraction per initialisation (mean and each seed)"
                                   + ("" if alone else f", and the paired difference of each arm against scratch "
                                                       f"with its {level} interval"),
                               caption="Mean over seeds (line) and each seed (dots)." if alone else
                                       f"Left: mean over seeds (line) and each seed (dots). Right: per-seed "
                                       f"differences against scratch (dots), their mean and {level} interval."))
        if alone:
            section.add(Note("No paired difference: this study trained scratch alone, so it shows how the score "
                             "grows with labels, not whether pretraining helps (its command with --arms "
                             "scratch,pretrained keeps these runs and adds the comparison)."))
        rows, cut = [], False
        for init, per_fraction in (data.get("results") or {}).items():
            for fraction, s in per_fraction.items():
                s = s if isinstance(s, dict) else {"mean": s}
                ci = s.get("ci95") or [s.get("ci_low"), s.get("ci_high")]
                interval, clipped = _interval(ci, s.get("clipped_to"), 0.0, 1.0)
                cut |= clipped
                rows.append([init, fraction, fmt(s.get("mean")), interval, str(s.get("n", "-"))])
        if rows:
            section.add(Table(["initialisation", "label fraction", f"test {metric}", f"{level} interval", "seeds"], rows))
        paired = _paired_rows(data)
        cut |= any(row[3].endswith("*") for row in paired)
        if paired:
            # the answer to "does pretraining help": one interval of the per-seed differences, not two overlapping ones
            section.add(Table(["arm", "label fraction", f"paired difference ({metric})", f"{level} interval",
                               "conclusion"], paired))
        if cut:
            section.add(Note(f"Intervals marked * reached past what their quantity can be (0 to 1 for a {metric}, "
                             "-1 to 1 for a difference of two) and are shown cut to it: the true value lies there, "
                             f"so the cut interval covers it as often. An interval this wide from "
                             f"{_count(data.get('seeds'))} seeds says little; 5 or more seeds give one worth reading."))
        failures = data.get("failures") or []
        if data.get("complete") is False or failures:
            section.add(Note(f"Incomplete study: {len(failures)} of {data.get('num_runs', '?')} run(s) failed or are "
                             f"missing, so some points above rest on fewer seeds; rerun its command to retry them"
                             + (f" ({data['command']})." if data.get("command") else ".")))
    return section


def _interval(ci, clipped_to, lowest: float, highest: float) -> tuple[str, bool]:
    """The interval cell of a quantity in ``[lowest, highest]`` (a Dice or AUC in 0-1, a difference of two in -1 to
    1), marked * when cut to that range: by the study (``clipped_to``), or here for a study written before the
    study cut its intervals (benchmarks/label_efficiency/statistics.clip_interval, which this room may not import)."""
    if not ci or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return "-", False
    try:
        low, high = float(ci[0]), float(ci[1])
    except (TypeError, ValueError):
        return f"[{fmt(ci[0])}, {fmt(ci[1])}]", False
    cut = bool(clipped_to) or low < lowest or high > highest
    low, high = (max(low, lowest), min(high, highest)) if cut else (low, high)
    return f"[{fmt(low)}, {fmt(high)}]{'*' if cut else ''}", cut


def _study_hint(run: RunFolder) -> str:
    """How to run a study on this run. ``--pretrained`` left at ``auto`` would pretrain a backbone anew, so the run's
    own backbone is passed when it holds one."""
    backbone = (run.bundle("pretraining") / "models" / "model.pt").resolve()
    # one folder per bundle, as the study's own default (outputs/label_efficiency/<bundle>): a second bundle's study
    # into the same folder is refused
    command = ["python", "-m", "unimiss_monai", "label-efficiency", "--bundle", "unimiss_cxr_segmentation",
               "--out", str((run.root / "label_efficiency" / "unimiss_cxr_segmentation").resolve())]
    if backbone.is_file():
        command += ["--pretrained", str(backbone)]
        start = f"from this run's pretrained backbone ({backbone})"
    else:  # --pretrained auto: the study pretrains its own backbone first
        start = "from a backbone it pretrains first (40 epochs; this run holds none)"
    # the study's defaults (benchmarks/label_efficiency/command.py and tasks.py, which this room may not import)
    return ("No label-efficiency study in this run. It fine-tunes the CXR segmentation " + start + " and from "
            "scratch on subsets of the training labels, the same subsets for both: 2 arms (scratch, pretrained) x 4 "
            "label fractions (0.05, 0.1, 0.25, 1.0) x 5 seeds = 40 small trainings of 16 epochs x 25 iterations: `"
            + shlex.join(command) + "`; then rerun the report.")


def _count(seeds) -> str:
    return str(len(seeds)) if isinstance(seeds, (list, tuple)) else str(seeds if seeds is not None else "?")
