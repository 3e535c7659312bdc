"""``python -m unimiss_monai label-efficiency``: test score vs fraction of training labels, from scratch and from the
pretrained encoder, by training and evaluating a fine-tuning bundle through ``monai.bundle``.

Honest by construction: both initialisations see the same training subsets (drawn per seed from the bundle's training
split), the same epochs, seeds and network, and are scored on the bundle's held-out test split by its own evaluate
config. Every number in the output comes from an evaluation report written by a run, whose folder is kept.

A task is a :data:`TASKS` entry: which configs train and evaluate it, which report file and metric to read. The
segmentation bundle is scored by the mean test Dice over structures (``segmentation_report.json``), the classification
bundles by the test macro ROC AUC that their evaluate config writes to ``metrics.json`` (``macro_auc``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TASKS", "Task", "label_efficiency", "summarise"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """How to run and score one bundle in the label-efficiency study."""

    train_configs: tuple[str, ...]
    eval_configs: tuple[str, ...]
    report: str  # file the evaluate run writes under its output_dir
    metric: str  # display name
    score: str  # how to read the score from the report: "mean_over_structures:<metric>" or "key:<metric>"
    small: dict = field(default_factory=dict)  # overrides of the default (small, CPU) scale
    small_configs: tuple[str, ...] = ()  # bundle overlays layered on every config at the small scale
    seeded: dict = field(default_factory=dict)  # overrides that make ``@seed`` drive the training randomness


TASKS: dict[str, Task] = {
    "unimiss_cxr_segmentation": Task(
        train_configs=("train.json",),
        eval_configs=("train.json", "evaluate.json"),
        report="segmentation_report.json",
        metric="Dice",
        score="mean_over_structures:dice",
        small={
            "spatial_size": [64, 64], "batch_size": 4, "num_workers": 0,
            "network_def#embed_dims": [16, 32, 32, 64], "network_def#num_heads": [1, 2, 2, 4],
            "network_def#decoder_num_heads": [2, 2, 1], "network_def#stem_channels": [8, 16],
        },
    ),
}

# the classification bundles fix their determinism seed in ``initialize``; the study varies it per seed
_SEEDED_CLASSIFICATION = {"initialize#0": "$monai.utils.set_determinism(seed=@seed)"}
for _name in ("unimiss_cxr_classification", "unimiss_ct_classification"):
    TASKS[_name] = Task(
        train_configs=("train.json",),
        eval_configs=("train.json", "evaluate.json"),
        report="metrics.json",
        metric="macro AUC",
        score="key:macro_auc",
        small_configs=("smoke.yaml",),
        seeded=_SEEDED_CLASSIFICATION,
    )


def _read_score(task: Task, report_path: Path) -> float:
    report = json.loads(report_path.read_text())
    kind, metric = task.score.split(":")
    if kind == "mean_over_structures":
        values = [v[metric] for v in report["mean"].values() if v.get(metric) is not None]
        if not values:
            raise ValueError(f"{report_path}: no {metric} value for any structure")
        return float(np.mean(values))
    if kind == "key":
        value = report.get(metric)
        if value is None:
            raise ValueError(f"{report_path}: no {metric!r} value (is a class missing from the test split?)")
        return float(value)
    raise ValueError(f"unknown score kind {kind!r} in task definition")


# 97.5 % quantiles of Student's t for 1..12 degrees of freedom (two-sided 95 % intervals); 1.96 beyond
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179)


def summarise(scores: list[float]) -> dict:
    """Mean, sample standard deviation and a 95 % t-interval of the mean (a single run has no interval)."""
    arr = np.asarray(scores, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return {"mean": mean, "std": None, "ci95": None, "n": int(len(arr))}
    std = float(arr.std(ddof=1))
    t = _T975[len(arr) - 2] if len(arr) - 1 <= len(_T975) else 1.96
    half = float(t * std / math.sqrt(len(arr)))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": int(len(arr))}


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _plot(results: dict, metric: str, bundle: str, path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for init, by_fraction in results.items():
        fr = sorted(by_fraction, key=float)
        means = [by_fraction[f]["mean"] for f in fr]
        lo = [m - (s["ci95"][0] if s["ci95"] else m) for m, s in zip(means, (by_fraction[f] for f in fr))]
        hi = [(s["ci95"][1] if s["ci95"] else m) - m for m, s in zip(means, (by_fraction[f] for f in fr))]
        ax.errorbar([float(f) for f in fr], means, yerr=[lo, hi], marker="o", capsize=3, label=init)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel(f"test {metric} (mean, 95% CI)")
    ax.set_title(f"{bundle}: {metric} vs fraction", fontsize=9)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    _write_atomic(path, buf.getvalue())


def label_efficiency(
    bundle: str = "unimiss_cxr_segmentation",
    fractions: str | float | tuple = "0.1,1.0",
    seeds: int = 3,
    pretrained: str | None = None,
    dataset_dir: str = "samples",
    output_dir: str = "outputs/label_efficiency",
    max_epochs: int = 10,
    small: bool = True,
    bundles_dir: str | None = None,
    **overrides,
) -> str:
    """Train ``bundle`` on fractions of its training labels, from scratch and from pretrained weights, and write
    ``label_efficiency.json`` + ``label_efficiency.png`` (test score vs fraction, mean and 95 % interval over seeds):
    Dice for ``unimiss_cxr_segmentation``, macro ROC AUC for ``unimiss_cxr_classification`` and
    ``unimiss_ct_classification``.

    Args:
        bundle: a name in :data:`TASKS`: unimiss_cxr_segmentation, unimiss_cxr_classification,
            unimiss_ct_classification.
        fractions: comma-separated fractions in (0, 1] of the training split.
        seeds: runs per (initialisation, fraction); seed ``s`` fixes the subset and the training randomness.
        pretrained: encoder checkpoint; defaults to ``bundles/unimiss_pretraining/models/model.pt``. When it does not
            exist only the scratch runs are made (and that is said).
        dataset_dir: a ``samples`` output or the bundle's data folder.
        output_dir: where the runs (kept, one folder each) and the summary go.
        max_epochs: training epochs of every run (validation at the end only).
        small: use the task's small network and image size (the CPU default; the classification bundles take their
            ``smoke.yaml`` overlay); False trains the bundle as shipped.
        bundles_dir: folder of the bundles; defaults to the repository's ``bundles/``.
        overrides: further ``monai.bundle`` overrides for every run (e.g. ``learning_rate=1e-3``).

    Returns:
        The path of ``label_efficiency.json``.
    """
    from monai.bundle import ConfigWorkflow
    from tqdm import tqdm

    if bundle not in TASKS:
        raise ValueError(f"label-efficiency: unknown bundle {bundle!r}; choose one of {sorted(TASKS)}")
    task = TASKS[bundle]
    fr = [float(f) for f in (fractions.split(",") if isinstance(fractions, str) else np.atleast_1d(fractions))]
    if not fr or any(not 0 < f <= 1 for f in fr):
        raise ValueError(f"label-efficiency: fractions must be in (0, 1], got {fractions!r}")
    if int(seeds) < 1:
        raise ValueError(f"label-efficiency: seeds must be >= 1, got {seeds!r}")
    root = Path(bundles_dir) if bundles_dir else Path(__file__).resolve().parents[2] / "bundles"
    bundle_root = root / bundle
    if not (bundle_root / "configs").is_dir():
        raise FileNotFoundError(f"label-efficiency: bundle folder {bundle_root} not found; pass bundles_dir")
    pretrained = pretrained or str(root / "unimiss_pretraining" / "models" / "model.pt")
    inits = {"scratch": None}
    if Path(pretrained).is_file():
        inits["pretrained"] = str(Path(pretrained).resolve())
    else:
        print(f"[label-efficiency] no pretrained weights at {pretrained}: running from scratch only "
              "(train the unimiss_pretraining bundle or pass --pretrained PATH)", flush=True)

    out = Path(output_dir).resolve()
    common = {**(task.small if small else {}), **task.seeded, **overrides, "dataset_dir": dataset_dir,
              "max_epochs": int(max_epochs), "val_interval": int(max_epochs)}
    overlays = task.small_configs if small else ()
    configs = lambda names: [str(bundle_root / "configs" / n) for n in (*names, *overlays)]  # noqa: E731
    # the training split as the bundle itself reads it (paths resolved, labels in the form its loss expects)
    reader = ConfigWorkflow(config_file=configs(task.train_configs), workflow_type="train", bundle_root=str(out),
                            **common)
    training = list(reader.parser.get_parsed_content("train#dataset#data"))

    runs = []
    with tqdm(total=len(inits) * len(fr) * int(seeds), desc="label-efficiency runs", unit="run") as bar:
        for seed in range(int(seeds)):
            for f in fr:
                # the same subset for both initialisations
                order = np.random.default_rng(seed).permutation(len(training))
                subset = [training[i] for i in sorted(order[: max(1, math.ceil(f * len(training)))])]
                for init, path in inits.items():
                    run_dir = out / "runs" / f"{init}_f{f:g}_s{seed}"
                    train = ConfigWorkflow(config_file=configs(task.train_configs), workflow_type="train",
                                           bundle_root=str(run_dir), **common, seed=seed, pretrained_path=path,
                                           **{"train#dataset#data": subset})
                    train.initialize()
                    train.run()
                    train.finalize()
                    evaluate = ConfigWorkflow(config_file=configs(task.eval_configs), workflow_type="eval",
                                              bundle_root=str(run_dir), output_dir=str(run_dir / "report"), **common,
                                              seed=seed, pretrained_path=None)
                    evaluate.initialize()
                    evaluate.run()
                    evaluate.finalize()
                    report = run_dir / "report" / task.report
                    score = _read_score(task, report)
                    runs.append({"init": init, "fraction": f, "seed": seed, "num_labels": len(subset),
                                 "score": score, "report": str(report)})
                    bar.set_postfix_str(f"{init} f={f:g} s={seed}: {task.metric} {score:.3f}")
                    bar.update(1)

    results = {init: {f"{f:g}": summarise([r["score"] for r in runs if r["init"] == init and r["fraction"] == f]) for f in fr} for init in inits}
    summary = {"bundle": bundle, "metric": task.metric, "split": "test", "fractions": fr, "seeds": int(seeds),
               "max_epochs": int(max_epochs), "small": small, "pretrained": inits.get("pretrained"),
               "report": task.report, "score": task.score,
               "num_training": len(training), "results": results, "runs": runs}
    json_path = out / "label_efficiency.json"
    _write_atomic(json_path, json.dumps(summary, indent=2).encode())
    _plot(results, task.metric, bundle, out / "label_efficiency.png")
    for init, by_fraction in results.items():
        for f, s in by_fraction.items():
            ci = f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]" if s["ci95"] else "(one run)"
            print(f"[label-efficiency] {init:10s} fraction {f:>5s}: {task.metric} {s['mean']:.3f} {ci}", flush=True)
    print(f"[label-efficiency] {json_path}  {out / 'label_efficiency.png'}", flush=True)
    return str(json_path)
