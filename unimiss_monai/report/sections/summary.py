"""Summary section: the headline numbers of the run in one table, each linked to the section that explains it."""

from __future__ import annotations

from ..classifier_metrics import read_classifier_metrics
from ..document import Note, Paragraph, Section, Table, fmt
from ..run_folder import (
    RunFolder,
    holds_run_output,
    how_trained,
    inference_summary,
    read_json,
    recorded_steps,
    scored_cases,
    stale_notes,
)
from ..splits import evaluated_split, held_out, split_words
from .pretraining import untrained_maps
from .run_steps import wrapper_seconds

__all__ = ["SMOKE_WARNING", "smoke_run", "summary_section"]

#: tools/demo.sh's smoke overlays train tiny networks for about a minute: their scores look like results but are not
SMOKE_WARNING = ("Smoke run (demo_scale.txt: smoke): tiny networks trained for about a minute, so the numbers below "
                 "only check that the chain runs end to end and say nothing about the method; run `bash "
                 "tools/demo.sh` (demo scale) for meaningful ones.")

FINE_TUNES = ("cxr_segmentation", "ct_segmentation", "cxr_classification", "ct_classification")
#: every stage in chain order, as the summary names it
_STAGES = (("drr_generation", "DRR generation"), ("pretraining", "UniMiSS+ pretraining"),
           ("cxr_segmentation", "CXR segmentation"), ("ct_segmentation", "CT segmentation"),
           ("cxr_classification", "CXR classification"), ("ct_classification", "CT classification"))


def _dice(report: dict | None, names: list[str]) -> list[str]:
    mean = (report or {}).get("mean", {})
    return [f"{n} {fmt(mean.get(n, {}).get('dice'), 2)}" for n in names if n in mean]


def smoke_run(run: RunFolder) -> bool:
    """Whether tools/demo.sh wrote this run at smoke scale, as its ``demo_scale.txt`` says (absent: not known)."""
    try:
        return (run.root / "demo_scale.txt").read_text().strip() == "smoke"
    except (OSError, UnicodeDecodeError):
        return False


def summary_section(run: RunFolder) -> Section:
    section = Section("summary", "Summary")
    if smoke_run(run):
        section.add(Note(SMOKE_WARNING))
    rows = []
    probe = read_json(run.bundle("pretraining") / "knn_probe.json")
    if probe:
        last = probe[-1]
        maps = last.get("feature_maps") or {}
        best = max(maps, key=maps.get) if maps else None
        # an untrained encoder's maps may already beat raw voxels: give the epoch-0 value beside the last one
        start = untrained_maps(probe)
        untrained = f", {fmt(start[best], 2)} untrained" if best in start else ""
        on_maps = f"; best stage map {best} {fmt(maps[best], 2)}{untrained}" if best else ""
        rows.append(["pretraining", "k-NN probe accuracy (organ crops)",
                     f"CLS {fmt(last.get('knn_accuracy'), 2)}{on_maps} (raw voxels {fmt(last.get('pixel_baseline'), 2)}, "
                     f"chance {fmt(1 / last['num_classes'] if last.get('num_classes') else None, 2)})", "pretraining",
                     ("pretraining", "pretraining")])
    not_test, tested = [], []  # each stage as the prose names it: scored on other cases than a test split's, or not
    cxr = read_json(run.bundle("cxr_segmentation") / "eval" / "segmentation_report.json")
    if cxr:
        words = split_words(split := evaluated_split(run, "cxr_segmentation", cxr), "DRRs" if run.sample_data else "images")
        (tested if held_out(split) else not_test).append(f"CXR segmentation: its {words}")
        rows.append(["CXR segmentation", f"Dice, {scored_cases(cxr)} {words}",
                     ", ".join(_dice(cxr, cxr.get("structures", []))), "cxr-segmentation", ("cxr_segmentation", "eval")])
    ct = read_json(run.bundle("ct_segmentation") / "eval" / "segmentation_report.json")
    if ct:
        ct_cases = split_words(split := evaluated_split(run, "ct_segmentation", ct), "slab(s)" if run.sample_data else "cases")
        (tested if held_out(split) else not_test).append(f"CT segmentation: its {ct_cases}")
        rows.append(["CT segmentation", f"Dice, {scored_cases(ct)} {ct_cases}",
                     ", ".join(_dice(ct, ct.get("structures", []))), "ct-segmentation", ("ct_segmentation", "eval")])
    notes = []  # said above the table: a metrics.json not of this project (its stage's row shows what it understands)
    for bundle, label in (("cxr_classification", "CXR classification"), ("ct_classification", "CT classification")):
        m, note = read_classifier_metrics(run, bundle)
        notes += [Note(f"{label}: {note}")] if note else []
        if m:
            per = ", ".join(f"{e.get('class')} {fmt(e.get('auc'), 2)}" for e in m.get("per_class", []))
            split = evaluated_split(run, bundle, m)
            cases = "cases" if held_out(split) else split_words(split, "cases")
            (tested if held_out(split) else not_test).append(f"{label}: its {cases}")
            rows.append([label, f"{'test ' if split == 'test' else ''}ROC AUC, {scored_cases(m)} {cases}",
                         f"macro {fmt(m.get('macro_auc'), 2)} ({per})", "classification", (bundle, "eval")])
    steps = recorded_steps(run.root)
    if steps:
        total = sum(s.get("wall_seconds") or 0 for s in steps)
        loads = [s["load_average"][0] for s in steps if s.get("load_average")]
        reused = any(s.get("status") == "skipped" for s in steps)  # the steps section counts this invocation's only
        # outside the commands: without it the chain took longer than its steps; of the runs the wall times are of
        wrapper = wrapper_seconds(steps, as_measured=True)
        measured = "wall time of all steps" + (" (reused ones as measured when they ran)" if reused else "")
        rows.append(["whole chain", measured + ("; end to end, with the step wrapper's start-up and checks"
                                                if wrapper is not None else ""),
                     f"{total / 60:.1f} min" + (f"; {(total + wrapper) / 60:.1f} min" if wrapper is not None else "")
                     + (f" (load average {min(loads):.1f}-{max(loads):.1f})" if loads else ""), "steps", None])
    section.add(*notes)
    if not rows:
        return section.add(Note(f"Nothing to summarise in {run.root}: run `bash tools/demo.sh {run.root}` first."))
    for row in rows:  # a number that is not the held model's says so where it is read first
        if row[4] and row[4][1] in stale_notes(run.bundle(row[4][0])):
            row[2] += " (not of the model in the folder: see its section)"
    data = ("synthetic phantoms (sample data written with --synthetic, in some or all of its data sets: a test of the "
            "pipeline, not of the method)" if run.sample_data and run.synthetic
            else "one real chest CT (with its TotalSegmentator labels) and one real radiograph" if run.sample_data
            else "the data their commands name (not this package's sample data, which the report would describe: "
                 "what the data are is not recorded here)")
    held = [(name, label) for name, label in _STAGES if holds_run_output(run.bundle(name))]
    starts = {how_trained(run.bundle(b)) for b, _ in held if b in FINE_TUNES}
    fine_tuned = starts.pop() if len(starts) == 1 else "trained (from the pretrained backbone or not: see each section)"
    evaluated = "evaluation on held-out test data" + (f" ({'; '.join(not_test)})" if not_test else "")
    if not tested:  # no stage scored its test split (or none was evaluated)
        evaluated = f"evaluation ({'; '.join(not_test) or 'none in this folder yet'})"
    if run.by_demo:  # the demo's chain, each step fed by the one before: the steps whose outputs are here
        said = f"The chain, on {data}: " + " -> ".join(_chain(run, [name for name, _ in held], fine_tuned,
                                                              evaluated if tested or not_test else None))
    else:  # how one stage fed the next is not recorded here (--samples names the data, not the steps run)
        stages = ", ".join(label for _, label in held) or "none yet"
        said = f"Stages with outputs in this folder, on {data}: {stages}; {evaluated}"
    section.add(Paragraph(f"{said}. The table gives each stage's scores; the sections below show the pictures behind "
                          "them."))
    section.add(Table(["stage", "measure", "result"], [[a, b, c] for a, b, c, _, _ in rows]))
    return section


def _chain(run: RunFolder, held: list[str], fine_tuned: str, evaluated: str | None) -> list[str]:
    """The demo chain's steps, in order, of the stages ``held`` (those with outputs in the folder) alone: a demo
    stopped early, or a folder some stages were removed from, is not said to have run the others."""
    steps = ["DRRs of the CT"] if "drr_generation" in held else []
    steps += ["UniMiSS+ pretraining on CT slabs, their DRRs and radiographs"] if "pretraining" in held else []
    tuned = [label for name, label in _STAGES if name in held and name in FINE_TUNES]
    if tuned:
        steps.append(f"{'CXR and CT segmentation and classification' if len(tuned) == 4 else _and(tuned)} {fine_tuned}")
    steps += [evaluated] if evaluated else []
    inferred = {name for name in held if name in FINE_TUNES and inference_summary(run.bundle(name) / "inference")}
    segmented = [what for name, what in (("ct_segmentation", "CT"), ("cxr_segmentation", "radiograph"))
                 if name in inferred]
    on = (["the sample inputs" if run.synthetic else f"the real {' and '.join(segmented)}"] if segmented else [])
    on += ["the classifiers' held-out test images"] if inferred - {"ct_segmentation", "cxr_segmentation"} else []
    return steps + ([f"inference on {' and '.join(on)}"] if on else [])


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
