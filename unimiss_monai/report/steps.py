"""Run one step of the demo chain and record it in ``RUN_DIR/demo_steps.json``; skip it when its outputs are valid.

``tools/demo.sh`` calls this once per step::

    python -m unimiss_monai.report.steps RUN_DIR NAME --outputs A [B ...] [--inputs C ...] [--fresh] -- CMD ...

It prints the exact command, then either skips the step (every output exists and is newer than every input, and
the last record of the step is a success of the same command) or runs it, and writes one record per step:
``{"name", "command", "argv", "status" ("ok" | "failed" | "skipped"), "returncode", "wall_seconds", "cpu_seconds",
"started", "load_average", "outputs", "check_seconds"}``. A skipped step keeps the timing of the run that made its
outputs (``reused_from``). ``check_seconds`` is this wrapper's own time in this invocation, outside the command: the
interpreter's start-up from :data:`STEP_CALLED` (the time its caller started it; ``tools/demo.sh`` sets it, without it
the start-up is not counted) and the check of the outputs, up to the record; with ``wall_seconds`` it makes the
step's time end to end, and a skipped step keeps that of the run that made its outputs as ``reused_check_seconds``.
The file also holds the environment of the latest step (versions, CPU count). It is replaced atomically, so a killed
demo never leaves it half-written. The command runs with :data:`RUNNING_STEP` set to the
step's record so far (JSON: name, stage, command, argv, started, load average, run folder): the report step's page
of that folder lists itself as running, not with the times of its previous record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from unimiss_monai.data.writers import save_json

__all__ = ["RUNNING_STEP", "STEPS_FILE", "STEP_CALLED", "called_at", "environment", "outputs_valid", "quote_command",
           "read_steps", "run_step"]

#: file name of the step records inside a run folder
STEPS_FILE = "demo_steps.json"
#: environment variable holding the record so far of the step whose command is running (set for that command only)
RUNNING_STEP = "UNIMISS_RUNNING_STEP"
#: environment variable holding the time (seconds since the epoch) the caller started this wrapper for a step
STEP_CALLED = "UNIMISS_STEP_CALLED"


def read_steps(run_dir: str | os.PathLike) -> dict:
    """The records of ``run_dir/demo_steps.json`` as ``{"steps": [...], "environment": {...}}``; empty when absent.

    Raises ``ValueError`` naming the file when it is not valid JSON of that shape.
    """
    path = Path(run_dir) / STEPS_FILE
    if not path.is_file():
        return {"steps": [], "environment": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it to record the steps anew") from err
    if not isinstance(data, dict) or not isinstance(data.get("steps", []), list):
        raise ValueError(f"{path}: expected {{'steps': [...]}}; delete it to record the steps anew")
    data.setdefault("steps", [])
    data.setdefault("environment", {})
    return data


def environment() -> dict:
    """Versions and machine facts worth stating next to timings."""
    import importlib.metadata as md

    versions = {}
    for dist in ("unimiss_monai", "monai", "torch", "numpy", "pytorch-ignite", "nibabel", "scipy", "matplotlib"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "versions": versions}


def outputs_valid(outputs: Sequence[str | os.PathLike], inputs: Sequence[str | os.PathLike] = ()) -> tuple[bool, str]:
    """Whether every output exists and none is older than the newest existing input; with the reason."""
    if not outputs:
        return False, "the step names no output"
    missing = [str(p) for p in outputs if not Path(p).exists()]
    if missing:
        return False, f"missing {missing[0]}"
    oldest = min(Path(p).stat().st_mtime for p in outputs)
    newer = [str(p) for p in inputs if Path(p).exists() and Path(p).stat().st_mtime > oldest]
    if newer:
        return False, f"{newer[0]} is newer than the outputs"
    return True, "outputs up to date"


def quote_command(argv: Sequence[str]) -> str:
    """``argv`` as one shell line to copy: like ``shlex.join``, but an argument holding single quotes (a bundle's
    ``--config_file "['a.json','b.yaml']"``) is put in double quotes when that is safe, as the bundles' docs write it."""
    parts = []
    for arg in argv:
        quoted = shlex.quote(arg)
        if quoted != arg and "'" in arg and not any(c in arg for c in '"$`\\!'):
            quoted = f'"{arg}"'
        parts.append(quoted)
    return " ".join(parts)


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def called_at(environ=os.environ) -> float | None:
    """The time the caller started this wrapper (:data:`STEP_CALLED`), or None when it is not set or unreadable.
    Bash's ``$EPOCHREALTIME`` writes the locale's decimal mark, which may be a comma."""
    try:
        value = float(environ.get(STEP_CALLED, "").replace(",", "."))
    except ValueError:
        return None
    # a value from another clock or set by hand long ago: the start-up time is not known
    return value if 0 < time.time() - value < 3600 else None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _record(run_dir: Path, record: dict) -> None:
    data = read_steps(run_dir)
    data["steps"] = [s for s in data["steps"] if s.get("name") != record["name"]] + [record]
    data["environment"] = environment()
    save_json(data, run_dir / STEPS_FILE)


def run_step(run_dir: str | os.PathLike, name: str, argv: Sequence[str], outputs: Sequence[str] = (),
             inputs: Sequence[str] = (), fresh: bool = False, stage: str = "", called: float | None = None) -> int:
    """Run (or skip) one step; returns its exit status. ``stage`` is the report section the step belongs to;
    ``called``: when the wrapper was started (seconds since the epoch), default now."""
    called = time.time() if called is None else called
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = quote_command(argv)
    print(f"\n[demo] {name}:\n  {command}", flush=True)
    previous = next((s for s in read_steps(run_dir)["steps"] if s.get("name") == name), None)
    valid, why = outputs_valid(outputs, inputs)
    same = previous is not None and previous.get("command") == command and previous.get("status") in ("ok", "skipped")
    if not fresh and valid and same:
        print(f"[demo] {name}: skipped, {why} (--fresh runs it again)", flush=True)
        record = {**previous, "status": "skipped", "reused_from": previous.get("reused_from", previous.get("started")),
                  "check_seconds": round(time.time() - called, 1)}  # this invocation's, unlike the command's times
        if previous.get("status") != "skipped":  # the wrapper's time of the run that made the outputs, kept with them
            record["reused_check_seconds"] = previous.get("check_seconds")
        _record(run_dir, record)
        return 0
    started, load, cpu0 = time.strftime("%Y-%m-%dT%H:%M:%S"), _load_average(), _children_cpu()
    # the record so far: what the command is told of its own step, and what its record begins with
    head = {"name": name, "stage": stage, "command": command, "argv": list(argv), "started": started,
            "load_average": load, "check_seconds": round(time.time() - called, 1)}  # so far: the report step's own
    env = {**os.environ, RUNNING_STEP: json.dumps({**head, "run_dir": str(run_dir.resolve())})}
    env.pop(STEP_CALLED, None)  # this wrapper's start, not that of one the command may start in turn
    t0 = time.time()  # the clock of ``called``: the wrapper's share is the rest of their difference
    try:
        returncode = subprocess.call(list(argv), env=env)
    except OSError as err:  # the program itself is missing
        print(f"[demo] {name}: cannot start {argv[0]!r}: {err}", file=sys.stderr, flush=True)
        returncode = 127
    wall = time.time() - t0
    record = {**head, "status": "ok" if returncode == 0 else "failed", "returncode": returncode,
              "wall_seconds": round(wall, 1), "cpu_seconds": round(_children_cpu() - cpu0, 1),
              "load_average_after": _load_average(), "outputs": [str(p) for p in outputs],
              "cwd": os.getcwd()}  # what the relative paths of argv and outputs are relative to
    record["check_seconds"] = round(max(0.0, time.time() - called - wall), 1)
    _record(run_dir, record)
    print(f"[demo] {name}: {record['status']} in {wall:.0f} s", flush=True)
    return returncode


def main(args: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if args is None else args)
    if "--" not in args:
        print("usage: python -m unimiss_monai.report.steps RUN_DIR NAME [--outputs P ...] [--inputs P ...] [--fresh] "
              "[--stage S] -- COMMAND ...", file=sys.stderr)
        return 2
    cut = args.index("--")
    parser = argparse.ArgumentParser(prog="python -m unimiss_monai.report.steps")
    parser.add_argument("run_dir")
    parser.add_argument("name")
    parser.add_argument("--outputs", nargs="*", default=[])
    parser.add_argument("--inputs", nargs="*", default=[])
    parser.add_argument("--stage", default="")
    parser.add_argument("--fresh", action="store_true")
    ns = parser.parse_args(args[:cut])
    if not args[cut + 1:]:
        parser.error("no command after --")
    return run_step(ns.run_dir, ns.name, args[cut + 1:], ns.outputs, ns.inputs, ns.fresh, ns.stage, called_at())


if __name__ == "__main__":
    sys.exit(main())
