"""Pretraining section: loss curves per term, collapse monitors and the k-NN probe against its pixel baseline."""

from __future__ import annotations

import math

import numpy as np

from unimiss_monai.visualize.phase_curves import (
    PHASE_LABELS,
    PHASE_STYLES,
    draw_phase_lines,
    finite_points,
    phase_blocks,
    phase_lines,
    phase_styles,
    points,
    shade_phases,
)

from ..document import Figure, Note, Paragraph, Section, Table, fmt
from ..images import figure_png
from ..run_folder import RunFolder, read_json, recorded_steps, stale_notes

__all__ = ["MONITORS", "collapse_verdict", "non_finite_note", "pretraining_section"]

#: curves of loss_curves.json that watch for collapse rather than measure a loss
MONITORS = ("teacher_entropy", "teacher_batch_entropy", "center_norm")


def _series(values) -> tuple[np.ndarray, np.ndarray]:
    return points(values)[:2]


def _loss_figure(curves: dict) -> tuple[bytes, str]:
    """The loss terms, one panel each, and the caption of what was drawn: each phase of a term a line of its own (the
    terms summed into ``loss`` change with the phase), averaged over that phase's iterations only; the phases shaded
    where they switch few enough times to read."""
    from matplotlib.figure import Figure as MplFigure

    terms = [k for k in curves if k not in MONITORS]
    blocks = phase_blocks({k: curves[k] for k in terms})
    lines = {term: phase_lines(curves[term], finite=True) for term in terms}
    # a window of a 25th of the longest phase's line: one phase's course, not the run's, is what is smoothed
    window = max(1, max((len(x) for parts in lines.values() for x, _, _ in parts), default=0) // 25)
    cols = max(1, min(3, len(terms)))
    rows = max(1, math.ceil(len(terms) / cols))
    fig = MplFigure(figsize=(4.0 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    shaded = smoothed = False
    phases = [b[2] for b in blocks]
    for ax, term in zip(axes, terms):
        shaded = shade_phases(ax, blocks) or shaded
        drawn = draw_phase_lines(ax, lines[term], window, "tab:blue", phases, lw=(0.6, 1.6), faint=0.35)
        smoothed = drawn or smoothed
        if (styles := phase_styles(phases)) and ax is axes[0]:
            ax.legend(handles=styles, fontsize=7)
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[len(terms):]:
        ax.axis("off")
    fig.tight_layout()
    return figure_png(fig), _loss_caption(blocks, window if smoothed else 1, shaded)


def _loss_caption(blocks: list, window: int, shaded: bool) -> str:
    """The caption of :func:`_loss_figure`, saying only what it drew."""
    phases = [b[2] for b in blocks if b[2] is not None]
    apart = len(set(phases)) > 1
    over = f"{window} of its phase's iterations" if apart else f"{window} iterations"
    caption = (f"Each loss term per iteration (faint) and its moving average over {over} (bold)." if window > 1 else
               "Each loss term per iteration (too few iterations to smooth).")
    if apart:
        names = " and ".join(f"{PHASE_LABELS.get(p, (p,))[0]}" for p in dict.fromkeys(phases))
        styles = ", ".join(f"{PHASE_LABELS.get(p, (p,))[0]} {'solid' if PHASE_STYLES.get(p) == '-' else 'dashed'}"
                           for p in dict.fromkeys(phases))
        caption += (f" The {names} phases are drawn apart ({styles}): the terms summed into loss differ between them, "
                    "so each line joins its own phase's iterations only; a term of one phase only has no line in the "
                    "other.")
        caption += (f" Shaded: the {names} phases." if shaded else
                    f" The phases switch {_switches(blocks)} times, too often to shade.")
    elif not phases:
        caption += " The curves record no phases (written by a version before it recorded them): drawn as one."
    unrecorded = [(a, b) for a, b, phase in blocks if phase is None]
    if unrecorded and phases:  # a run resumed across the version that began recording them
        spans = ", ".join(f"{a:g}-{b:g}" if b > a else f"{a:g}" for a, b in unrecorded)
        caption += (f" Iterations {spans} were written without their phase (by a version before it recorded them): "
                    "drawn dotted as phase not recorded, in neither phase, since the file does not say which it was.")
    return caption


def _switches(blocks: list) -> int:
    """How often the phase changes between the blocks of a recorded phase: a span written without one (a run
    resumed across the version that began recording them) is no switch."""
    known = [b[2] for b in blocks if b[2] is not None]
    return sum(a != b for a, b in zip(known, known[1:]))


def _monitor_figure(curves: dict, out_dim: int | None) -> tuple[bytes, bool]:
    """The collapse monitors, each phase a line of its own like the losses; and whether the phases were shaded."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(9.6, 3.0))
    ax1, ax2 = fig.subplots(1, 2)
    blocks = phase_blocks({k: v for k, v in curves.items() if k in MONITORS})
    shaded = [shade_phases(ax, blocks) for ax in (ax1, ax2)][0]
    phases = [b[2] for b in blocks]
    for name, colour in (("teacher_entropy", "tab:blue"), ("teacher_batch_entropy", "tab:orange")):
        draw_phase_lines(ax1, phase_lines(curves.get(name, []), finite=True), 1, colour, phases, name, lw=(1.4, None))
    if out_dim:
        ax1.axhline(math.log(out_dim), color="grey", ls=":", lw=1, label=f"log K (uniform, K={out_dim})")
    ax1.axhline(0, color="black", lw=0.5)
    ax1.set(title="teacher entropy (nats)", xlabel="iteration")
    ax1.legend(handles=ax1.get_legend_handles_labels()[0] + phase_styles(phases), fontsize=8)
    centre = phase_lines(curves.get("center_norm", []), finite=True)
    draw_phase_lines(ax2, centre, 1, "tab:green", phases, lw=(1.4, None))
    ax2.set(title="DINO centre norm", xlabel="iteration")
    fig.tight_layout()
    return figure_png(fig), shaded


def _probe_figure(history: list[dict]) -> bytes:
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(5.6, 3.4))
    ax = fig.add_subplot()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h.get("knn_accuracy") for h in history], "o-", lw=1.6, label="teacher CLS (k-NN)")
    stages = sorted({name for h in history for name in h.get("feature_maps", {})})
    # the encoder's stage maps, where the probe had them (KNNProbe feature_maps); none in the baseline's orange
    for name, colour in zip(stages, ("tab:green", "tab:purple", "tab:brown", "tab:olive")):
        ax.plot(epochs, [h.get("feature_maps", {}).get(name) for h in history], "-", lw=1.0, color=colour,
                label=f"{name} map (k-NN)")
    base = history[-1].get("pixel_baseline")
    if base is not None:
        ax.axhline(base, color="tab:orange", ls="--", lw=1.2, label=f"raw voxels (k-NN) {base:.2f}")
    n_classes = history[-1].get("num_classes")
    if n_classes:
        ax.axhline(1 / n_classes, color="grey", ls=":", lw=1, label=f"chance 1/{n_classes}")
    ax.set(xlabel="epoch", ylabel="leave-one-out accuracy", ylim=(0, 1), title="k-NN probe on organ crops")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def untrained_maps(history: list[dict]) -> dict[str, float]:
    """The stage-map accuracies of the untrained encoder (the epoch-0 entry); empty without one."""
    first = history[0] if history else {}
    return (first.get("feature_maps") or {}) if first.get("epoch") == 0 else {}


def probe_notes(history: list[dict]) -> list[Note]:
    """What the last probe entry says against the raw-voxel baseline; a stage map counts as learnt only where it
    also rose above its own epoch-0 value (untrained convolutions can already beat raw voxels)."""
    last, first = history[-1], history[0]
    base, cls = last.get("pixel_baseline"), last.get("knn_accuracy")
    if base is None or cls is None:
        return []
    maps, start = last.get("feature_maps") or {}, untrained_maps(history)
    learnt = {k: v for k, v in maps.items() if v > base and (first.get("epoch") != 0 or v > start.get(k, 1.0))}
    notes = []
    if cls < base:
        notes.append(Note(
            f"The CLS embedding ({cls:.2f}) does not beat raw voxels ({base:.2f}): a network this small trained for "
            "minutes on one CT learns little in its pooled embedding that a k-NN on voxels does not already see."))
    if learnt:
        best = max(learnt, key=learnt.get)
        untrained = f" and above its untrained value ({start[best]:.2f})" if first.get("epoch") == 0 else ""
        notes.append(Note(
            f"The encoder's {best} map ends at {learnt[best]:.2f}, above raw voxels ({base:.2f}){untrained}: its "
            "spatial features learnt something about these crops."))
    elif cls < base:
        notes.append(Note("No stage map rose above raw voxels and its untrained value either. Judge features on "
                          "full-size runs."))
    return notes


def non_finite_note(curves: dict) -> str:
    """A sentence naming every curve that holds NaN or infinite values (with its first such iteration and their
    count); empty when every value is finite. The figures leave such points out, so it must be said in words."""
    bad = []
    for name, values in curves.items():
        x, y = _series(values)
        wrong = ~np.isfinite(y)
        if wrong.any():
            bad.append(f"{name} ({int(wrong.sum())} of {len(y)} values, first at iteration {x[wrong][0]:g})")
    if not bad:
        return ""
    return ("Non-finite values (NaN or infinite) in the pretraining curves: " + "; ".join(bad) + ". The figures "
            "leave them out and the collapse check ignores them. The training diverged there, so what it exported "
            "does not describe a trained network: lower the learning rate and run the pretraining step again.")


def collapse_verdict(curves: dict, out_dim: int | None, tail: int = 20, margin: float = 0.05) -> str:
    """A sentence when the teacher's mean entropy over the last ``tail`` iterations is within ``margin`` (relative)
    of log K (uniform output) or of 0 (one prototype); empty when it stays between or is unknown."""
    if "teacher_entropy" not in curves or not out_dim or out_dim < 2:
        return ""
    _, y = finite_points(*_series(curves["teacher_entropy"]))  # non-finite values are reported by non_finite_note
    if not len(y):
        return ""
    end, top = float(np.mean(y[-tail:])), math.log(out_dim)
    if end >= (1 - margin) * top:
        first = next((int(i) for i, v in zip(*_series(curves["teacher_entropy"])) if v >= (1 - margin) * top), None)
        return (f"The teacher collapsed to a uniform output: its entropy ends at {end:.2f} nats, log K = {top:.2f} "
                f"(K = {out_dim} prototypes){f', from iteration {first} on' if first else ''}. The DINO terms then "
                "sit at log K and carry no signal; only the reconstruction terms still train the backbone. Lower the "
                "learning rate or the teacher temperature, or train a larger network, to avoid it.")
    if end <= margin * top:
        return (f"The teacher collapsed onto one prototype: its entropy ends at {end:.2f} nats (log K = {top:.2f}). "
                "Raise the centring momentum or the teacher temperature.")
    return ""


def _out_dim(run: RunFolder) -> int | None:
    """``out_dim`` of the pretraining run, from the config files its recorded command names (best effort)."""
    import yaml

    try:
        steps = recorded_steps(run.root)
    except ValueError:  # a broken step record: the summary and steps sections name it; this guess does without
        return None
    argv = next((s.get("argv") or [] for s in steps if s.get("name") == "pretraining"), [])
    if "--config_file" not in argv or argv.index("--config_file") + 1 >= len(argv):
        return None
    value = None
    for path in argv[argv.index("--config_file") + 1].strip("[]").replace("'", "").split(","):
        try:
            with open(path.strip()) as f:
                content = yaml.safe_load(f)  # JSON is YAML
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(content, dict) and isinstance(content.get("out_dim"), int):
            value = content["out_dim"]
    return value


def pretraining_section(run: RunFolder) -> Section:
    section = Section("pretraining", "UniMiSS+ pretraining")
    folder = run.bundle("pretraining")
    curves = read_json(folder / "loss_curves.json")
    history = read_json(folder / "knn_probe.json")
    if not curves and not history:
        return section.add(Note(f"No pretraining outputs in {folder} (loss_curves.json, knn_probe.json): "
                                + run.to_make("pretraining", "the pretraining bundle (configs/train.json)") + "."))
    section.add(*(Note(note) for note in stale_notes(folder).values()))
    on = "on CT slabs, their DRRs and radiographs" if run.sample_data else "on the CTs and radiographs its datalist lists"
    section.add(Paragraph(
        f"Cross-dimensional self-distillation of one backbone {on}. The teacher "
        "follows the student by EMA; the exported teacher backbone initialises every fine-tuning below."))
    if curves:
        broken = non_finite_note(curves)
        if broken:
            section.add(Note(broken))
        png, caption = _loss_figure(curves)
        section.add(Figure(png, name="pretraining_losses", caption=caption, alt="Pretraining loss per term against "
                           "iteration: " + ", ".join(k for k in curves if k not in MONITORS)))
        out_dim = _out_dim(run)
        png, shaded = _monitor_figure(curves, out_dim)
        section.add(Figure(png, name="pretraining_collapse",
                           alt="Collapse monitors: teacher entropy, batch entropy and DINO centre norm against iteration",
                           caption="Collapse monitors. An entropy near 0 means the teacher puts every input on one "
                                   "prototype; one at log K means a uniform, uninformative output. Healthy training "
                                   "stays between the two." + (" Shaded: the phases; the lines break at each switch."
                                                               if shaded else "")))
        verdict = collapse_verdict(curves, out_dim)
        if verdict:
            section.add(Note(verdict))
    if history:
        section.add(Figure(_probe_figure(history), name="pretraining_knn", alt="k-NN probe accuracy per epoch against "
                           "the raw-voxel baseline and chance", caption="Leave-one-out weighted k-NN accuracy of "
                           "the teacher's CLS embedding and of the encoder's stage maps (flattened, unpooled) on "
                           "labelled organ crops, against the same k-NN on raw voxels."))
        last = history[-1]
        n = last.get("num_classes")
        section.add(Table(["epoch", "iteration", "k-NN accuracy (CLS)", "stage maps 1-4", "raw-voxel baseline",
                           "chance", "crops", "classes"],
                          [[str(h.get("epoch")), str(h.get("iteration")), fmt(h.get("knn_accuracy")),
                            " / ".join(fmt(v, 2) for v in h["feature_maps"].values()) if h.get("feature_maps") else "-",
                            fmt(h.get("pixel_baseline")), fmt(1 / n if n else None), str(h.get("num_items")),
                            str(h.get("num_classes"))] for h in history[-6:]],
                          caption="k-NN probe (last epochs)"))
        section.add(*probe_notes(history))
    return section
