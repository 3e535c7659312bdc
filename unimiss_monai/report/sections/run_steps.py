"""Run section: what ran, how long each step took, the exact commands, versions and seeds."""

from __future__ import annotations

import json
import os

from ..document import Code, Figure, Note, Paragraph, Section, Table, fmt
from ..images import figure_png
from ..run_folder import RunFolder, read_json, recorded_steps
from ..steps import RUNNING_STEP

__all__ = ["end_to_end", "run_section", "seed_of", "wrapper_seconds"]


def seed_of(argv: list[str]) -> str:
    """The ``--seed`` a command passes, or ``-`` (the step has no seed: its output is deterministic)."""
    return argv[argv.index("--seed") + 1] if "--seed" in argv and argv.index("--seed") + 1 < len(argv) else "-"


def _ran(step: dict) -> bool:
    """Whether the step's command ran in this invocation (a skipped step's times are an earlier one's)."""
    return step.get("status") in ("ok", "failed")


def end_to_end(step: dict) -> float | None:
    """The step's seconds in this invocation from the wrapper's start to its record: the command (when it ran) and
    the wrapper's own start-up and checks; None where the record predates ``check_seconds``."""
    check = step.get("check_seconds")
    if check is None:
        return None
    return check + ((step.get("wall_seconds") or 0) if _ran(step) else 0)


def wrapper_seconds(steps: list[dict], as_measured: bool = False) -> float | None:
    """The step wrapper's own seconds over ``steps`` (``check_seconds``) in this invocation, or, ``as_measured``,
    those of the runs that made each step's outputs (a skipped step's ``reused_check_seconds``, as its wall time is
    theirs); None when a record predates them."""
    checks = [s.get("reused_check_seconds") if as_measured and s.get("status") == "skipped" else s.get("check_seconds")
              for s in steps]
    return None if not checks or None in checks else sum(checks)


def _timing_figure(steps: list[dict]) -> tuple[bytes, str]:
    """Bars of each step's command and, after it, the wrapper's own time; with the caption of what was drawn."""
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.patches import Patch

    timed = [s for s in steps if s.get("wall_seconds") is not None or s.get("check_seconds") is not None]
    fig = MplFigure(figsize=(8.0, 0.32 * len(timed) + 1.0))
    ax = fig.add_subplot()
    colours = {"ok": "tab:blue", "skipped": "tab:gray", "failed": "tab:red"}
    wall = [s.get("wall_seconds") or 0 for s in timed]
    ax.barh(range(len(timed)), wall, color=[colours.get(s.get("status"), "tab:blue") for s in timed])
    check = [s.get("check_seconds") or 0 for s in timed]
    if any(check):
        ax.barh(range(len(timed)), check, left=wall, color="tab:olive", alpha=0.6)
        ax.legend(handles=[Patch(color="tab:blue", label="command"),
                           Patch(color="tab:olive", alpha=0.6, label="step wrapper (start-up, checks)")], fontsize=8)
    ax.set_yticks(range(len(timed)))
    ax.set_yticklabels([s["name"] for s in timed], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("wall time (s)")
    fig.tight_layout()
    reused = "grey: reused outputs of an earlier invocation, their time as measured then"
    if not any(check):
        return figure_png(fig), f"Wall time per step ({reused})."
    return figure_png(fig), (f"Wall time per step: its command ({reused}) and, in olive, the step wrapper's own time "
                             "in this invocation (its start-up, the check of the outputs and the record).")


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
    total = sum(s.get("wall_seconds") or 0 for s in steps if _ran(s))
    ends = [end_to_end(s) for s in steps]
    wrapper = wrapper_seconds(steps)
    whole = None if wrapper is None else total + wrapper
    reused = [s["name"] for s in steps if s.get("status") == "skipped"]
    env = data.get("environment", {})
    section.add(Paragraph(
        f"{len(steps)} steps, {total / 60:.1f} min of wall time in their commands in this invocation"
        + (f" ({len(reused)} reused from an earlier one, times shown as measured then)" if reused else "")
        + (f"; {whole / 60:.1f} min end to end, with the step wrapper's start-up and checks around each command "
           f"({(whole - total) / 60:.1f} min)" if whole is not None else
           "; the step wrapper's own time around each command (its start-up and checks) is not recorded in "
           f"{run.root / 'demo_steps.json'} (written by an earlier version), so the time end to end is unknown")
        + f", on {env.get('cpu_count', '?')} CPU(s), OMP_NUM_THREADS={env.get('omp_num_threads')}. Load average: "
          "the 1-minute value when the step started (other work on the machine slows every step)."))
    rows = [[s.get("name", "?"), s.get("status", "?"), fmt(s.get("wall_seconds"), 1), fmt(s.get("check_seconds"), 1),
             fmt(end, 1), fmt(s.get("cpu_seconds"), 1), fmt((s.get("load_average") or [None])[0], 2),
             seed_of(s.get("argv") or []), s.get("started", "")] for s, end in zip(steps, ends)]
    rows.append(["all steps", "", fmt(total, 1), fmt(None if whole is None else whole - total, 1), fmt(whole, 1),
                 "", "", "", ""])
    section.add(Table(["step", "status", "wall (s)", "wrapper (s)", "end to end (s)", "CPU (s)", "load avg", "seed",
                       "started"], rows, caption="wall: the step's command; wrapper: the step wrapper's start-up and "
                       "checks around it in this invocation; all steps: the commands that ran in this invocation"))
    png, caption = _timing_figure(steps)
    section.add(Figure(png, name="timing", alt="Wall time of each step as horizontal bars", caption=caption))
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
