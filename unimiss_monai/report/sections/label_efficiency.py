"""Label-efficiency section: scratch against pretrained at several label fractions, when a study is in the run."""

from __future__ import annotations

from ..document import Figure, Note, Paragraph, Section, Table, fmt
from ..run_folder import RunFolder, read_json

__all__ = ["label_efficiency_section"]


def label_efficiency_section(run: RunFolder) -> Section:
    section = Section("label-efficiency", "Label efficiency")
    found = run.find("label_efficiency.json") + run.find("*/label_efficiency.json") + run.find("*/*/label_efficiency.json")
    if not found:
        return section.add(Note(
            "No label-efficiency study in this run. It trains from scratch and from the pretrained backbone on "
            "fractions of the labels, five seeds each, on the same subsets for every arm: `python -m unimiss_monai "
            f"label-efficiency --bundle unimiss_cxr_segmentation --out {run.root / 'label_efficiency'}`; "
            "then rerun the report."))
    for path in found[:3]:
        data = read_json(path) or {}
        metric = data.get("metric", "score")
        section.add(Paragraph(f"{data.get('bundle', path.parent.name)}: test {metric} against the fraction of "
                              f"training labels, {_count(data.get('seeds'))} seeds per point ({path})."))
        png = path.with_suffix(".png")
        if png.is_file():
            section.add(Figure(png.read_bytes(), name="label_efficiency",
                               alt=f"Test {metric} against label fraction, scratch and pretrained, with 95 % intervals",
                               caption="Mean over seeds with 95 % intervals."))
        rows = []
        for init, per_fraction in (data.get("results") or {}).items():
            for fraction, s in per_fraction.items():
                s = s if isinstance(s, dict) else {"mean": s}
                ci = s.get("ci95") or [s.get("ci_low"), s.get("ci_high")]
                rows.append([init, fraction, fmt(s.get("mean")),
                             f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci and ci[0] is not None else "-", str(s.get("n", "-"))])
        if rows:
            section.add(Table(["initialisation", "label fraction", f"test {metric}", "95 % interval", "seeds"], rows))
        paired = [[d.get("arm", "pretrained"), fraction, f"{d.get('mean', float('nan')):+.3f}",
                   f"[{fmt(d.get('ci_low'))}, {fmt(d.get('ci_high'))}]", d.get("conclusion", "")]
                  for fraction, d in (data.get("paired_difference") or {}).items() if isinstance(d, dict)]
        if paired:
            # the answer to "does pretraining help": one interval of the per-seed differences, not two overlapping ones
            section.add(Table(["arm", "label fraction", f"paired difference ({metric})", "95 % interval", "conclusion"],
                              paired))
    return section


def _count(seeds) -> str:
    return str(len(seeds)) if isinstance(seeds, (list, tuple)) else str(seeds if seeds is not None else "?")
