"""``python -m unimiss_monai label-efficiency``: test score vs fraction of training labels, from scratch and from the
pretrained encoder, by training and evaluating a fine-tuning bundle through ``monai.bundle``.

Honest by construction: both initialisations see the same training subsets (drawn per seed from the bundle's training
split), the same number of iterations whatever the fraction, the same seeds and network, and are scored on the
bundle's held-out test split by its own evaluate config. Every number in the output comes from an evaluation report
written by a run, whose folder is kept.

The default (small) scale is sized for 2 CPU cores: the segmentation bundle at 64x64 with a narrow MiT+ (0.37 M
parameters), 6 x 25 iterations of batch 4 per run, and an encoder pretrained by :func:`pretrain_small_encoder` (the
``unimiss_pretraining`` bundle at its smoke scale with the same widths, 8 epochs), which is reused once written.

A task is a :data:`TASKS` entry: which configs train and evaluate it, which report file and metric to read. The
segmentation bundle is scored by the mean test Dice over structures (``segmentation_report.json``), the classification
bundles by the test macro ROC AUC that their evaluate config writes to ``metrics.json`` (``macro_auc``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unimiss_monai.data.writers import save_bytes

__all__ = ["TASKS", "Task", "label_efficiency", "pretrain_small_encoder", "summarise"]

logger = logging.getLogger(__name__)

_REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


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
            "learning_rate": 1e-3,
            # the deterministic loading/resizing runs once per image, not once per iteration
            "train#dataset#_target_": "CacheDataset", "train#dataset#progress": False,
        },
    ),
}

# every fine-tune bundle seeds its training randomness from its ``seed`` id, which the study sets per seed
for _name in ("unimiss_cxr_classification", "unimiss_ct_classification"):
    TASKS[_name] = Task(
        train_configs=("train.json",),
        eval_configs=("train.json", "evaluate.json"),
        report="metrics.json",
        metric="macro AUC",
        score="key:macro_auc",
        small_configs=("smoke.yaml",),
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
    save_bytes(buf.getvalue(), path)


def pretrain_small_encoder(
    out_dir: str | os.PathLike,
    epochs: int,
    dataset_dir: str = "samples",
    bundles_dir: str | os.PathLike | None = None,
    bundle: str = "unimiss_cxr_segmentation",
    **overrides,
) -> str:
    """Pretrain the encoder that ``bundle``'s small network uses, with the ``unimiss_pretraining`` bundle (its
    ``smoke.yaml`` scale, the encoder widths and 2D image size of the task's small overrides) for ``epochs`` epochs on
    the ``pretraining`` sample set, and return the exported teacher backbone ``out_dir/model.pt``.

    The export path is passed explicitly, so the result does not depend on where the bundle exports by default. An
    interrupted run resumes from ``out_dir/outputs/checkpoints``; a finished one is not trained again.
    """
    from monai.bundle import ConfigWorkflow

    out = Path(out_dir).resolve()
    model_path = out / "model.pt"
    if model_path.is_file() and (out / "pretraining.json").is_file():
        return str(model_path)
    root = Path(bundles_dir) if bundles_dir else _REPO_BUNDLES
    configs = root / "unimiss_pretraining" / "configs"
    if not (configs / "train.json").is_file():
        raise FileNotFoundError(f"label-efficiency: {configs / 'train.json'} not found; pass bundles_dir")
    small = TASKS[bundle].small
    matching = {k.replace("network_def#", "backbone#"): v for k, v in small.items() if k.startswith("network_def#")}
    if "spatial_size" in small:
        matching["image_size_2d"] = int(small["spatial_size"][0])
    settings = {**matching, "train#epochs": int(epochs), "train#save_every": 0, "train#num_workers": 0, **overrides}
    workflow = ConfigWorkflow(config_file=[str(configs / "train.json"), str(configs / "smoke.yaml")],
                              workflow_type="train", bundle_root=str(out), output_dir=str(out / "outputs"),
                              model_path=str(model_path), dataset_dir=dataset_dir, **settings)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    if not model_path.is_file():
        raise RuntimeError(f"label-efficiency: pretraining finished but wrote no {model_path}")
    save_bytes(json.dumps({"epochs": int(epochs), "dataset_dir": str(dataset_dir),
                                                         "overrides": settings}, indent=2, default=str).encode(), out / "pretraining.json")
    return str(model_path)


def _per_structure(task: Task, report_path: Path) -> dict | None:
    if not task.score.startswith("mean_over_structures:"):
        return None
    metric = task.score.split(":")[1]
    return {name: v.get(metric) for name, v in json.loads(report_path.read_text())["mean"].items()}


def _resolve_pretrained(pretrained, small, bundle, root, out, pretrain_epochs, pretrain_lr, dataset_dir) -> str | None:
    if pretrained is None or str(pretrained).lower() in ("", "none", "scratch"):
        return None
    if str(pretrained).lower() != "auto":
        if not Path(pretrained).is_file():
            raise FileNotFoundError(f"label-efficiency: pretrained checkpoint {pretrained} not found; pass an "
                                    "existing file, --pretrained auto, or --pretrained none for scratch only")
        return str(Path(pretrained).resolve())
    if small:
        if int(pretrain_epochs) < 1:
            print("[label-efficiency] --pretrain_epochs 0: running from scratch only", flush=True)
            return None
        print(f"[label-efficiency] pretraining the small encoder for {int(pretrain_epochs)} epochs "
              f"(unimiss_pretraining, smoke scale) into {out / 'pretraining'}", flush=True)
        pretrain_bundle = bundle if bundle in TASKS and TASKS[bundle].small else "unimiss_cxr_segmentation"
        return pretrain_small_encoder(out / "pretraining", pretrain_epochs, dataset_dir, root, pretrain_bundle,
                                      **{"train#lr": float(pretrain_lr)})
    shipped = root / "unimiss_pretraining" / "models" / "model.pt"
    if shipped.is_file():
        return str(shipped.resolve())
    print(f"[label-efficiency] no pretrained weights at {shipped}: running from scratch only "
          "(train the unimiss_pretraining bundle or pass --pretrained PATH)", flush=True)
    return None


def label_efficiency(
    bundle: str = "unimiss_cxr_segmentation",
    fractions: str | float | tuple = "0.1,1.0",
    seeds: int = 3,
    pretrained: str | None = "auto",
    dataset_dir: str = "samples",
    output_dir: str = "outputs/label_efficiency",
    max_epochs: int = 16,
    epoch_iterations: int | None = 25,
    pretrain_epochs: int = 40,
    pretrain_lr: float = 5e-4,
    small: bool = True,
    bundles_dir: str | None = None,
    **overrides,
) -> str:
    """Train ``bundle`` on fractions of its training labels, from scratch and from pretrained weights, and write
    ``label_efficiency.json`` + ``label_efficiency.png`` (test score vs fraction, mean and 95 % interval over seeds):
    Dice for ``unimiss_cxr_segmentation``, macro ROC AUC for ``unimiss_cxr_classification`` and
    ``unimiss_ct_classification``.

    Every run gets the same optimisation budget, ``max_epochs * epoch_iterations`` iterations, whatever its fraction
    (a small subset is cycled, not trained for fewer steps). A run whose report already exists under ``output_dir``
    with the same settings is read back, not trained again, so an interrupted study resumes. A run that fails is
    logged and listed under ``failures``; the others still count.

    Args:
        bundle: a name in :data:`TASKS`: unimiss_cxr_segmentation, unimiss_cxr_classification,
            unimiss_ct_classification.
        fractions: comma-separated fractions in (0, 1] of the training split.
        seeds: runs per (initialisation, fraction); seed ``s`` fixes the subset and the training randomness.
        pretrained: encoder checkpoint path; ``"none"`` for scratch only; ``"auto"``: with ``small``, pretrain the
            matching small encoder for ``pretrain_epochs`` epochs (:func:`pretrain_small_encoder`, kept in
            ``output_dir/pretraining`` and reused), else ``bundles/unimiss_pretraining/models/model.pt`` if present.
        dataset_dir: a ``samples`` output or the bundle's data folder.
        output_dir: where the runs (kept, one folder each) and the summary go.
        max_epochs: training epochs of every run (validation at the end only).
        epoch_iterations: iterations per epoch (the training subset is cycled); ``None``: one pass over the subset.
        pretrain_epochs: epochs of the ``"auto"`` pretraining run.
        pretrain_lr: its peak learning rate (the bundle scales its base rate by batch/256, which is near zero at the
            smoke batch size).
        small: use the task's small network and image size (the CPU default; the classification bundles take their
            ``smoke.yaml`` overlay); False trains the bundle as shipped.
        bundles_dir: folder of the bundles; defaults to the repository's ``bundles/``.
        overrides: further ``monai.bundle`` overrides for every run (e.g. ``learning_rate=1e-3``).

    Returns:
        The path of ``label_efficiency.json``.
    """
    import time

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
    if epoch_iterations is not None and int(epoch_iterations) < 1:
        raise ValueError(f"label-efficiency: epoch_iterations must be >= 1 or None, got {epoch_iterations!r}")
    root = Path(bundles_dir) if bundles_dir else _REPO_BUNDLES
    bundle_root = root / bundle
    if not (bundle_root / "configs").is_dir():
        raise FileNotFoundError(f"label-efficiency: bundle folder {bundle_root} not found; pass bundles_dir")
    out = Path(output_dir).resolve()
    started = time.perf_counter()
    inits = {"scratch": None}
    weights = _resolve_pretrained(pretrained, small, bundle, root, out, pretrain_epochs, pretrain_lr, dataset_dir)
    pretrain_seconds = time.perf_counter() - started
    if weights is not None:
        inits["pretrained"] = weights

    common = {**(task.small if small else {}), **overrides, "dataset_dir": dataset_dir,
              "max_epochs": int(max_epochs), "val_interval": int(max_epochs)}
    if epoch_iterations is not None:
        common["train#trainer#epoch_length"] = int(epoch_iterations)
    overlays = task.small_configs if small else ()
    configs = lambda names: [str(bundle_root / "configs" / n) for n in (*names, *overlays)]  # noqa: E731
    # the training split as the bundle itself reads it (paths resolved, labels in the form its loss expects)
    reader = ConfigWorkflow(config_file=configs(task.train_configs), workflow_type="train", bundle_root=str(out),
                            **common)
    training = list(reader.parser.get_parsed_content("train#dataset#data"))

    def summary_of(runs: list[dict]) -> dict:
        done = [r for r in runs if "score" in r]
        results = {init: {f"{f:g}": summarise(sc) for f in fr
                          if (sc := [r["score"] for r in done if r["init"] == init and r["fraction"] == f])}
                   for init in inits}
        structures = {init: {f"{f:g}": {name: float(np.mean([r["per_structure"][name] for r in rs]))
                                        for name in rs[0]["per_structure"]
                                        if all(r["per_structure"].get(name) is not None for r in rs)}
                             for f in fr
                             if (rs := [r for r in done if r["init"] == init and r["fraction"] == f
                                        and r.get("per_structure")])}
                      for init in inits}
        return {"bundle": bundle, "metric": task.metric, "split": "test", "fractions": fr, "seeds": int(seeds),
                "max_epochs": int(max_epochs), "epoch_iterations": epoch_iterations,
                "iterations_per_run": int(max_epochs) * int(epoch_iterations) if epoch_iterations else None,
                "small": small, "pretrained": inits.get("pretrained"), "pretrain_seconds": round(pretrain_seconds, 1),
                "overrides": {k: v for k, v in common.items() if k != "dataset_dir"}, "dataset_dir": str(dataset_dir),
                "report": task.report, "score": task.score, "num_training": len(training),
                "wall_seconds": round(time.perf_counter() - started, 1), "results": results,
                "per_structure": structures, "runs": runs,
                "failures": [r for r in runs if "error" in r]}

    json_path = out / "label_efficiency.json"
    runs: list[dict] = []
    with tqdm(total=len(inits) * len(fr) * int(seeds), desc="label-efficiency runs", unit="run") as bar:
        for seed in range(int(seeds)):
            for f in fr:
                # the same subset for both initialisations
                order = np.random.default_rng(seed).permutation(len(training))
                subset = [training[i] for i in sorted(order[: max(1, math.ceil(f * len(training)))])]
                for init, path in inits.items():
                    run_dir = out / "runs" / f"{init}_f{f:g}_s{seed}"
                    report = run_dir / "report" / task.report
                    settings = json.loads(json.dumps({**common, "seed": seed, "pretrained_path": path,
                                                      "subset": subset}, default=str))
                    run = {"init": init, "fraction": f, "seed": seed, "num_labels": len(subset), "report": str(report)}
                    t0 = time.perf_counter()
                    try:
                        settings_path = run_dir / "run_settings.json"
                        if not (report.is_file() and settings_path.is_file()
                                and json.loads(settings_path.read_text()) == settings):
                            report.unlink(missing_ok=True)
                            train = ConfigWorkflow(config_file=configs(task.train_configs), workflow_type="train",
                                                   bundle_root=str(run_dir), **common, seed=seed, pretrained_path=path,
                                                   **{"train#dataset#data": subset})
                            train.initialize()
                            train.run()
                            train.finalize()
                            evaluate = ConfigWorkflow(config_file=configs(task.eval_configs), workflow_type="eval",
                                                      bundle_root=str(run_dir), output_dir=str(run_dir / "report"),
                                                      **common, seed=seed, pretrained_path=None)
                            evaluate.initialize()
                            evaluate.run()
                            evaluate.finalize()
                            save_bytes(json.dumps(settings, indent=1).encode(), settings_path)
                            run["seconds"] = round(time.perf_counter() - t0, 1)
                        else:
                            run["reused"] = True
                        run["score"] = _read_score(task, report)
                        if (per := _per_structure(task, report)) is not None:
                            run["per_structure"] = per
                        bar.set_postfix_str(f"{init} f={f:g} s={seed}: {task.metric} {run['score']:.3f}")
                    except Exception as err:  # one failed run must not lose the others
                        logger.exception("label-efficiency run %s failed", run_dir.name)
                        while err.__cause__ is not None:  # config evaluation wraps the real cause
                            err = err.__cause__
                        run["error"] = f"{type(err).__name__}: {err}"
                        print(f"[label-efficiency] run {run_dir.name} FAILED: {run['error']}", flush=True)
                    runs.append(run)
                    save_bytes(json.dumps(summary_of(runs), indent=2).encode(), json_path)
                    bar.update(1)

    summary = summary_of(runs)
    if not any("score" in r for r in runs):
        raise RuntimeError(f"label-efficiency: every run failed; first error: {summary['failures'][0]['error']} "
                           f"(see {json_path})")
    save_bytes(json.dumps(summary, indent=2).encode(), json_path)
    _plot(summary["results"], task.metric, bundle, out / "label_efficiency.png")
    for init, by_fraction in summary["results"].items():
        for f, s in by_fraction.items():
            ci = f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]" if s["ci95"] else "(one run)"
            print(f"[label-efficiency] {init:10s} fraction {f:>5s}: {task.metric} {s['mean']:.3f} {ci} "
                  f"(n={s['n']})", flush=True)
    if summary["failures"]:
        print(f"[label-efficiency] {len(summary['failures'])} of {len(runs)} runs failed: "
              + "; ".join(f"{r['init']} f={r['fraction']:g} s={r['seed']}: {r['error']}" for r in summary["failures"]),
              flush=True)
    print(f"[label-efficiency] {json_path}  {out / 'label_efficiency.png'}  ({summary['wall_seconds']:.0f} s)",
          flush=True)
    return str(json_path)
