"""Run section: what ran, how long each step took, the exact commands, versions and seeds."""

from __future__ import annotations

import json
import os

from ..document import Code, Figure, Note, Paragraph, Section, Table, fmt
from ..images import figure_png
from ..run_folder import RunFolder, read_json, recorded_steps
from ..steps import RUNNING_STEP

__all__ = ["run_section", "seed_of"]


def seed_of(argv: list[str]) -> str:
    """The ``--seed`` a command passes, or ``-`` (the step has no seed: its output is deterministic)."""
    return argv[argv.index("--seed") + 1] if "--seed" in argv and argv.index("--seed") + 1 < len(argv) else "-"


def _timing_figure(steps: list[dict]) -> bytes:
    from matplotlib.figure import Figure as MplFigure

    timed = [s for s in steps if s.get("wall_seconds") is not None]
    fig = MplFigure(figsize=(8.0, 0.32 * len(timed) + 1.0))
    ax = fig.add_subplot()
    colours = {"ok": "tab:blue", "skipped": "tab:gray", "failed": "tab:red"}
    ax.barh(range(len(timed)), [s["wall_seconds"] for s in timed], color=[colours.get(s.get("status"), "tab:blue") for s in timed])
    ax.set_yticks(range(len(timed)))
    ax.set_yticklabels([s["name"] for s in timed], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("wall time (s)")
    fig.tight_layout()
    return figure_png(fig)


def _running_step(root) -> dict | None:
    """The record so far of the demo step of run folder ``root`` that is running this report
    (:data:`~..steps.RUNNING_STEP`), or None: a report of another folder made inside a step is no step of its own."""
    try:
        step = json.loads(os.environ.get(RUNNING_STEP) or "null")
    except ValueError:  # set by hand to something else: no step is taken to be running
        return None
    if not isinstance(step, dict) or not isinstance(step.get("name"), str):
        return None
    return step if step.get("run_dir") == str(root.resolve()) else None


def run_section(run: RunFolder) -> Section:
    section = Section("steps", "Steps, timing and commands")
    steps = recorded_steps(run.root)
    if not steps:
        return section.add(Note(f"No {run.root / 'demo_steps.json'}: this folder was not written by tools/demo.sh, "
                                "so the steps, their timing and commands are unknown."))
    data = read_json(run.root / "demo_steps.json")
    running = _running_step(run.root)
    if running:  # the step writing this page (the demo's report step): its record is its previous run's, if any
        steps = [s for s in steps if s.get("name") != running["name"]] + [{**running, "status": "running (this page)"}]
    total = sum(s.get("wall_seconds") or 0 for s in steps if s.get("status") in ("ok", "failed"))
    reused = [s["name"] for s in steps if s.get("status") == "skipped"]
    env = data.get("environment", {})
    section.add(Paragraph(
        f"{len(steps)} steps, {total / 60:.1f} min of wall time in this invocation"
        + (f" ({len(reused)} reused from an earlier one, times shown as measured then)" if reused else "")
        + f", on {env.get('cpu_count', '?')} CPU(s), OMP_NUM_THREADS={env.get('omp_num_threads')}. Load average: "
          "the 1-minute value when the step started (other work on the machine slows every step)."))
    rows = [[s.get("name", "?"), s.get("status", "?"), fmt(s.get("wall_seconds"), 1), fmt(s.get("cpu_seconds"), 1),
             fmt((s.get("load_average") or [None])[0], 2), seed_of(s.get("argv") or []), s.get("started", "")]
            for s in steps]
    section.add(Table(["step", "status", "wall (s)", "CPU (s)", "load avg", "seed", "started"], rows))
    section.add(Figure(_timing_figure(steps), name="timing", alt="Wall time of each step as horizontal bars",
                       caption="Wall time per step (grey: reused outputs of an earlier invocation)."))
    failed = [s for s in steps if s.get("status") == "failed"]
    if failed:
        section.add(Note("Failed: " + ", ".join(f"{s['name']} (exit {s.get('returncode')})" for s in failed)
                         + ". Their sections below are missing or stale; rerun tools/demo.sh after the fix."))
    section.add(Paragraph("Exact commands, in order (run from the repository root with the project's .venv active; "
                          "each reruns its step alone):"))
    section.add(Code("\n\n".join(f"# {s.get('name')}\n{s.get('command', '')}" for s in steps)))
    if env:
        versions = env.get("versions", {})
        section.add(Table(["software", "version"], [["python", str(env.get("python"))]]
                          + [[k, str(v)] for k, v in versions.items()] + [["platform", str(env.get("platform"))]],
                          caption="Versions"))
        section.add(Code(json.dumps({"omp_num_threads": env.get("omp_num_threads"), "cpu_count": env.get("cpu_count")})))
    return section
