"""Running a paired study run by run, resuming, and turning the per-run records into the results.

Each run ``(arm, fraction, seed)`` ends with ``runs/<run_id>/record.json``, written atomically: its score (or its
error), the subset it trained on and a fingerprint of everything that decides the run (settings, weights, subset,
seed). A rerun reads the records back and trains only the runs without a finished record of the same fingerprint,
so a study killed at any point continues where it stopped. The results are a pure function of the records and the
study's metadata (:func:`build_results`): a resumed study writes the same ``label_efficiency.json``, byte for byte, as
one that was never interrupted. Wall times stay in the records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from unimiss_monai.benchmarks.label_efficiency.design import RunSpec, StudyDesign
from unimiss_monai.benchmarks.label_efficiency.statistics import clip_interval, mean_interval, paired_difference
from unimiss_monai.benchmarks.label_efficiency.workers import run_in_workers
from unimiss_monai.data.writers import save_json
from unimiss_monai.utils.errors import failure_reason

__all__ = ["MARKER", "RECORD", "build_results", "conclusion", "fingerprint", "run_study"]

logger = logging.getLogger(__name__)

RECORD = "record.json"
# written first into every run folder: marks it as the study's own, so a changed run may replace its contents
MARKER = "run_settings.json"
# record fields that differ between two otherwise identical runs: kept in the record, left out of the results
_VOLATILE = ("seconds",)
# every task's score is on a 0-1 scale (tasks.Task.metric): its intervals, and those of a difference, stay in range
_SCORE_RANGE = (0.0, 1.0)
_DIFFERENCE_RANGE = (-1.0, 1.0)

Runner = Callable[[RunSpec, Path], Mapping]


def fingerprint(obj) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fresh_run_dir(run_dir: Path, key: str, bundle: str | None = None) -> None:
    """Make ``run_dir`` hold only outputs of a run with fingerprint ``key``: a folder of an earlier run of other
    settings (our marker, another fingerprint) is cleared, so its checkpoints are not resumed; a non-empty folder
    without our marker is refused. The marker names the ``bundle`` too, so that a study of another bundle can
    refuse the folder before it starts (:func:`.inputs.check_study_bundle`)."""
    marker = run_dir / MARKER
    if run_dir.is_dir() and any(run_dir.iterdir()):
        old = _read(marker)
        if old is None:
            raise FileExistsError(f"label-efficiency: {run_dir} exists and was not written by this study; choose "
                                  "another --out")
        if old.get("fingerprint") != key:
            logger.info("label-efficiency: %s was run with other settings: running it again", run_dir.name)
            shutil.rmtree(run_dir)
    if not marker.is_file():
        save_json({"fingerprint": key, **({"bundle": bundle} if bundle else {})}, marker)


def _execute(runner: Runner, spec: RunSpec, run_dir: Path, base: Mapping) -> dict:
    """Train and score one run; its record (``status`` ok or failed, with ``seconds``). An exception fails the run
    (and the runs waiting on the same training); ``KeyboardInterrupt`` still stops the study (with ``jobs`` > 1 the
    workers ignore Ctrl-C: the main process gets it and ends them)."""
    started = time.perf_counter()
    try:
        result = dict(runner(spec, run_dir))
        score = float(result.pop("score"))
        if not np.isfinite(score):
            raise ValueError(f"non-finite score {score}")
        record = {**base, "status": "ok", "score": score, **result}
    except Exception as err:  # one failed run must not lose the others
        logger.exception("label-efficiency run %s failed", spec.run_id)
        record = {**base, "status": "failed", "error": failure_reason(err)}
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def _copy_record(base: Mapping, same: Mapping) -> dict:
    """The record of a run that is the same training as the finished run ``same`` (another fraction)."""
    return {**base, **{k: v for k, v in same.items() if k not in base and k not in _VOLATILE},
            "same_run_as": same["run_id"], "seconds": 0.0}


def run_study(runs: Sequence[RunSpec], runner: Runner, out: str | Path, settings: Mapping[str, Mapping],
              progress: Callable[[dict], None] | None = None, jobs: int = 1) -> list[dict]:
    """Run (or read back) every run of ``runs`` and return their records, in the order of ``runs``.

    Args:
        runs: the plan (:meth:`StudyDesign.runs`).
        runner: ``runner(spec, run_dir)`` trains and scores one run; returns ``{"score": float, ...}`` (further
            JSON-able fields, e.g. ``per_structure``, go into the record). An exception fails that run and the runs
            of other fractions that are the same training: their records say why, and the next invocation tries them
            again. With ``jobs`` > 1 it must be picklable.
        out: the study folder; run ``r`` lives in ``out/runs/<r.run_id>``.
        settings: per arm, everything besides the subset and the seed that decides a run (overrides, weights and
            their checksum); part of each run's fingerprint. A run whose arm, seed, subset and settings equal those
            of a finished run of another fraction is not trained again: its record copies that run's score and
            names it in ``same_run_as``.
        progress: called with each record as it is made or read back.
        jobs: trainings run at once, each in its own process with ``torch.get_num_threads() // jobs`` threads (at
            least 1; :func:`.workers.run_in_workers`). Records are written by this process as runs finish; Ctrl-C, an
            error or a kill of this process ends the workers, so a killed study resumes as with one job, training
            again the runs that were in progress. A worker that dies fails the runs not finished yet. The scores of a
            run can differ in the last digits between thread counts (floating-point sums in another order); a study
            resumed with the same ``jobs`` writes the same JSON.
    """
    if int(jobs) < 1:
        raise ValueError(f"label-efficiency: jobs must be >= 1, got {jobs!r}")
    out = Path(out)
    records: dict[str, dict] = {}
    # finished runs by what decides their training (no fraction): two fractions that draw the same subset (e.g.
    # 0.05 and 0.1 of a split so small that both are one item) are one training, not two
    trained: dict[str, dict] = {}
    todo: dict[str, tuple[RunSpec, Path, dict]] = {}  # training key -> the run that trains it
    waiting: dict[str, list[dict]] = {}  # training key -> bases of the runs that copy it once it is done

    def finish(record: dict) -> None:
        save_json(record, out / "runs" / record["run_id"] / RECORD)
        records[record["run_id"]] = record
        if progress:
            progress(record)

    for spec in runs:
        run_dir = out / "runs" / spec.run_id
        training = {"settings": settings[spec.arm], "arm": spec.arm, "seed": spec.seed, "indices": list(spec.indices)}
        key, training_key = fingerprint({**training, "fraction": spec.fraction}), fingerprint(training)
        base = {"run_id": spec.run_id, "arm": spec.arm, "fraction": spec.fraction, "seed": spec.seed,
                "num_labels": len(spec.indices), "indices": list(spec.indices), "fingerprint": key}
        old = _read(run_dir / RECORD)
        if old is not None and old.get("status") == "ok" and old.get("fingerprint") == key:
            records[spec.run_id] = old
            if not old.get("same_run_as"):
                trained.setdefault(training_key, old)
            if progress:
                progress({**old, "reused": True})
            continue
        _fresh_run_dir(run_dir, key, settings[spec.arm].get("bundle"))
        if training_key in trained:
            finish(_copy_record(base, trained[training_key]))
        elif training_key in todo:
            waiting.setdefault(training_key, []).append(base)
        else:
            todo[training_key] = (spec, run_dir, base)

    def done(training_key: str, record: dict) -> None:
        finish(record)
        for other in waiting.pop(training_key, []):
            if record["status"] == "ok":
                finish(_copy_record(other, record))
            else:  # not trained: the next invocation trains it (or its source) again
                finish({**other, "status": "failed", "seconds": 0.0,
                        "error": f"the same training as {record['run_id']}, which failed: {record['error']}"})

    if int(jobs) == 1:
        for training_key, (spec, run_dir, base) in todo.items():
            done(training_key, _execute(runner, spec, run_dir, base))
    elif todo:
        def lost(training_key: str, reason: str) -> None:
            done(training_key, {**todo[training_key][2], "status": "failed", "error": reason, "seconds": 0.0})

        run_in_workers({key: (runner, *call) for key, call in todo.items()}, _execute, int(jobs), done, lost)
    return [records[spec.run_id] for spec in runs]


def conclusion(diff: Mapping, metric: str, arm: str, reference: str = "scratch") -> str:
    """One plain sentence about a paired difference."""
    if diff.get("ci_low") is None:
        return f"{arm} - {reference}: {diff.get('n', 0)} complete pair(s), too few for an interval"
    head = (f"{arm} - {reference} = {diff['mean']:+.3f} {metric}, {diff['confidence']:.0%} interval "
            f"[{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]"
            f"{' (cut to the -1 to 1 a difference can take)' if diff.get('clipped_to') else ''} over {diff['n']} seeds")
    if diff["includes_zero"]:
        return head + ": the interval includes 0, so this study does not show a difference"
    return head + f": {arm} is {'better' if diff['mean'] > 0 else 'worse'} at this confidence"


def _key(f: float) -> str:
    return f"{f:g}"


def build_results(records: Sequence[Mapping], design: StudyDesign, meta: Mapping, confidence: float = 0.95,
                  method: str = "t") -> dict:
    """The study's results from its run records (no clock, no file system): per arm and fraction the per-seed
    scores and their summary, per fraction the paired difference of every arm against ``scratch`` (the first arm
    after scratch is the headline ``paired_difference``), per-structure means for segmentation, and the runs."""
    reference = design.arms[0]
    ok = {(r["arm"], r["fraction"], r["seed"]): r for r in records if r.get("status") == "ok"}
    results: dict = {}
    structures: dict = {}
    for arm in design.arms:
        results[arm], structures[arm] = {}, {}
        for f in design.fractions:
            rs = [ok[(arm, f, s)] for s in design.seeds if (arm, f, s) in ok]
            if not rs:
                continue
            results[arm][_key(f)] = {"per_seed": {str(r["seed"]): r["score"] for r in rs},
                                     "num_labels": rs[0]["num_labels"],
                                     **clip_interval(mean_interval([r["score"] for r in rs], confidence),
                                                     *_SCORE_RANGE)}
            names = [n for n in (rs[0].get("per_structure") or {})
                     if all((r.get("per_structure") or {}).get(n) is not None for r in rs)]
            if names:
                structures[arm][_key(f)] = {n: float(np.mean([r["per_structure"][n] for r in rs])) for n in names}
    differences: dict = {}
    for arm in design.arms[1:]:
        differences[arm] = {}
        for f in design.fractions:
            seeds = [s for s in design.seeds if (arm, f, s) in ok and (reference, f, s) in ok]
            a = [ok[(arm, f, s)]["score"] for s in seeds]
            b = [ok[(reference, f, s)]["score"] for s in seeds]
            if len(seeds) >= 2:
                d = clip_interval(paired_difference(a, b, confidence=confidence, method=method), *_DIFFERENCE_RANGE)
            else:  # one pair has no spread: the difference is reported, the interval is not
                d = {"mean": float(a[0] - b[0]) if seeds else None, "ci_low": None, "ci_high": None,
                     "includes_zero": None, "n": len(seeds), "method": method, "confidence": float(confidence),
                     "differences": [float(x - y) for x, y in zip(a, b)]}
            d = {"arm": arm, "reference": reference, **d, "seeds": seeds}
            d["conclusion"] = conclusion(d, meta.get("metric", ""), arm, reference)
            differences[arm][_key(f)] = d
    headline = differences[design.arms[1]] if len(design.arms) > 1 else {}
    runs = [{k: v for k, v in r.items() if k not in _VOLATILE} for r in records]
    expected = len(design.arms) * len(design.fractions) * len(design.seeds)
    return {**meta, "split": meta.get("split", "test"), "fractions": list(design.fractions), "seeds": list(design.seeds),
            "arms": list(design.arms), "reference": reference,
            "interval": {"method": method, "confidence": float(confidence)},
            "complete": len(ok) == expected, "num_runs": expected,
            "results": results, "paired_difference": headline, "paired_differences": differences,
            "per_structure": {a: v for a, v in structures.items() if v},
            "runs": runs, "failures": [r for r in runs if r.get("status") != "ok"]}
