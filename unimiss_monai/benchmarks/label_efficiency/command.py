"""``python -m unimiss_monai label-efficiency``: does pretraining help? A paired study of a fine-tuning bundle.

For every label fraction and seed, each arm (``scratch``, ``pretrained`` = UniMiSS+, optionally ``unimiss`` = the
ECCV 2022 recipe and ``intra_inter``) fine-tunes the same network on the same training subset with the same seed and
the same budget of iterations, and the bundle's own evaluate config scores it on the same held-out test split. The
answer is the paired difference of each arm against scratch with its interval (:mod:`.statistics`), not two
separate intervals. Runs resume (:mod:`.study`); every number comes from a report that a run wrote and kept.
"""

from __future__ import annotations

import inspect
import json
import logging
import platform
import shlex
import time
from pathlib import Path

from unimiss_monai.benchmarks.label_efficiency.design import ARMS, StudyDesign, parse_list
from unimiss_monai.benchmarks.label_efficiency.inputs import (
    check_folders,
    check_study_bundle,
    check_weights,
    study_variant,
)
from unimiss_monai.benchmarks.label_efficiency.tasks import TASKS
from unimiss_monai.data.output_ledger import check_own_files, drawn_by_matplotlib, replacing_own
from unimiss_monai.data.writers import save_bytes, save_json
from unimiss_monai.utils.args import as_count
from unimiss_monai.utils.repository import repository_bundle
from unimiss_monai.utils.value_ranges import range_problem

__all__ = ["label_efficiency", "versions", "write_results"]

logger = logging.getLogger(__name__)


def versions() -> dict:
    """Versions of the software a study's numbers depend on."""
    import monai
    import numpy
    import scipy
    import torch

    import unimiss_monai

    return {"python": platform.python_version(), "unimiss_monai": unimiss_monai.__version__,
            "monai": monai.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__}


#: the study's results in ``--out``: the numbers, the plot, the docs table
RESULT_NAMES = ("label_efficiency.json", "label_efficiency.png", "label_efficiency.md")


def write_results(results: dict, out: str | Path) -> Path:
    """Write ``label_efficiency.json``, ``.png`` (:func:`.plot.label_efficiency_png`) and ``.md`` (the docs table)
    into ``out``; returns the JSON path."""
    from unimiss_monai.benchmarks.label_efficiency.plot import label_efficiency_png
    from unimiss_monai.benchmarks.label_efficiency.table import results_markdown

    out = Path(out)
    check_results_are_ours(out)  # all three before any: a refused file leaves no mix of old and new results
    with replacing_own(out / RESULT_NAMES[0], out, "--out"):
        path = save_json(results, out / RESULT_NAMES[0])
    if results["results"] and any(results["results"].values()):
        with replacing_own(out / RESULT_NAMES[1], out, "--out"):
            save_bytes(label_efficiency_png(results), out / RESULT_NAMES[1])
    with replacing_own(out / RESULT_NAMES[2], out, "--out"):
        save_bytes(results_markdown(results), out / RESULT_NAMES[2])
    return path


def check_results_are_ours(out: Path) -> None:
    """Refuse (``FileExistsError``, one line) a result file in ``out`` that this package did not write there: a study
    replaces only its own results (:mod:`unimiss_monai.data.output_ledger`). The results of a study of a version
    before that record are this package's, each recognised by its own content (:func:`_written_earlier`)."""
    for name in RESULT_NAMES:
        check_own_files([out / name], out, "--out", written_earlier=_written_earlier(out / name))


def _written_earlier(path: Path) -> bool:
    # what every version since the paired study writes: the JSON's fields, the table's first line and header, and
    # matplotlib's mark in the picture (in its first chunk after the header); a user's file of that name has none
    try:
        with open(path, "rb") as f:
            head = f.read(4096) if path.suffix != ".json" else f.read()
    except OSError:
        return False
    if path.suffix == ".json":
        try:
            earlier = json.loads(head)
        except ValueError:
            return False
        return isinstance(earlier, dict) and {"results", "paired_differences", "runs", "arms"} <= set(earlier)
    if path.suffix == ".png":
        return drawn_by_matplotlib(path)
    return head.startswith(b"Command: `") and b"\n| fraction (labelled items) | " in head


def _display_path(path: str | None, out: Path) -> str | None:
    # inside the study folder: relative, so two copies of a study give the same JSON
    if path is None:
        return None
    p = Path(path).resolve()
    return str(p.relative_to(out)) if p.is_relative_to(out) else str(p)


class _ConfigFiles:
    """``config_files(names)`` -> the bundle's config paths with the small-scale overlays last; a class rather than
    a closure so that ``--jobs`` can hand it to worker processes."""

    def __init__(self, bundle_root: Path, overlays) -> None:
        self.bundle_root, self.overlays = Path(bundle_root), tuple(overlays)

    def __call__(self, names) -> list[str]:
        return [str(self.bundle_root / "configs" / n) for n in (*names, *self.overlays)]


def _parse_weights(weights) -> dict[str, str]:
    if not weights:
        return {}
    items = weights.split(",") if isinstance(weights, str) else list(weights)
    pairs = [str(item).split("=", 1) for item in items]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"label-efficiency: --weights takes arm=path pairs separated by commas, got {weights!r}")
    return {k.strip(): v.strip() for k, v in pairs}


def label_efficiency(
    bundle: str = "unimiss_cxr_segmentation",
    fractions: str | float | tuple = "0.05,0.1,0.25,1.0",
    seeds: int | str | tuple = 5,
    arms: str | tuple = "scratch,pretrained",
    pretrained: str | None = "auto",
    weights: str | None = None,
    dataset_dir: str = "samples",
    out: str | None = None,
    max_epochs: int | None = None,
    epoch_iterations: int | None = 25,
    pretrain_epochs: int = 40,
    pretrain_lr: float = 5e-4,
    pretraining_dir: str | None = None,
    interval: str = "t",
    confidence: float = 0.95,
    small: bool = True,
    bundles_dir: str | None = None,
    jobs: int = 1,
    **overrides,
) -> str:
    """Fine-tune ``bundle`` on fractions of its training labels from several initialisations (arms), paired by
    seed, and write ``label_efficiency.json`` / ``.png`` / ``.md`` into ``out``: test Dice
    (``unimiss_cxr_segmentation``, ``unimiss_ct_segmentation``) or macro ROC AUC (``unimiss_cxr_classification``,
    ``unimiss_ct_classification``) per arm and seed, and per fraction the paired difference of each arm against
    scratch with its interval (``paired_difference``: ``mean``, ``ci_low``, ``ci_high``, ``includes_zero``).

    Every run gets ``max_epochs * epoch_iterations`` iterations whatever its fraction (a small subset is cycled).
    Each run keeps its folder and a ``record.json``; a rerun with the same settings and data (by content) skips
    finished runs and writes the same JSON as an uninterrupted study. A run that fails is listed under ``failures``
    and tried again by the next call; the others still count, and the call raises ``RuntimeError`` once the results
    are written (a non-zero exit).

    Args:
        bundle: unimiss_cxr_segmentation (default), unimiss_ct_segmentation, unimiss_cxr_classification or
            unimiss_ct_classification.
        fractions: comma-separated fractions in (0, 1] of the training split (default 0.05,0.1,0.25,1.0).
        seeds: a number N (seeds 0..N-1) or a comma-separated list; seed ``s`` fixes the subset and the training
            randomness of every arm. 5 or more for an interval worth reading (default 5).
        arms: comma-separated, starting with ``scratch``: any of scratch, pretrained (UniMiSS+), unimiss (the
            UniMiSS ECCV recipe on the same MiT+ backbone), intra_inter (intra-inter contrastive clustering, MiT+
            slice encoder). Default scratch,pretrained.
        pretrained: weights of the ``pretrained`` arm, a path; ``auto`` pretrains them at the small scale
            (``unimiss_pretraining`` smoke scale, ``pretrain_epochs`` epochs), else takes the shipped
            ``bundles/unimiss_pretraining/models/model.pt``; ``none`` drops the arm.
        weights: ``arm=path`` pairs for any arm (e.g. ``unimiss=a.pt,intra_inter=b.pt``); an arm without weights
            is pretrained at the small scale (its recipe overlay, ``pretrain_epochs`` epochs).
        dataset_dir: a ``python -m unimiss_monai samples`` output (default ``samples``).
        out: the study folder (runs, pretraining, results; default ``outputs/label_efficiency/<bundle>``). One
            bundle's study per folder; an --out that holds another bundle's study is refused.
        max_epochs: training epochs of every run (validation at the end only); default: the bundle's small-scale
            budget (24 for ``unimiss_ct_segmentation``, 16 for the others).
        epoch_iterations: iterations per epoch; ``None``: one pass over the subset.
        pretrain_epochs: epochs of each pretraining made by the study.
        pretrain_lr: its peak learning rate (the bundle's base_lr x batch / 256 is near zero at the smoke batch).
        pretraining_dir: where the pretrainings go (default ``out/pretraining``); share it between the studies of
            several bundles to pretrain once.
        interval: ``t`` (Student's t) or ``bootstrap`` (percentile, fixed seed) interval of the paired difference.
        confidence: its coverage.
        small: the tasks' small network and image size (the 2-CPU default); False trains the bundle as shipped.
        bundles_dir: folder of the bundles; defaults to the repository's ``bundles/``.
        jobs: runs trained at once, each in its own process with an equal share of the threads. On 2 cores, 2 jobs
            of one thread finish a small-scale study sooner than 1 job of two threads, as much of a small network's
            step is single-threaded Python. Scores can differ in the last digits between thread counts.
        overrides: further ``monai.bundle`` ids for every run, each as an option of its own (e.g.
            ``--learning_rate 1e-3``, not ``--overrides``); an id that neither the
            train nor the evaluate configs define (a misspelled option such as ``--fraction``) is refused before any
            work, with the nearest options and ids.

    Returns:
        The path of ``label_efficiency.json``.
    """
    from monai.bundle import ConfigWorkflow
    from tqdm import tqdm

    from unimiss_monai.benchmarks.label_efficiency.pretrain import pretrain_arm
    from unimiss_monai.benchmarks.label_efficiency.runner import BundleRunner
    from unimiss_monai.benchmarks.label_efficiency.study import build_results, run_study
    from unimiss_monai.utils.hashing import sha256_datalist, sha256_file
    from unimiss_monai.utils.run_arguments import check_overrides

    if overrides.keys() & {"help", "h"}:
        # fire hands --help to a function with **overrides as an override, which would start a study
        print(inspect.getdoc(label_efficiency), flush=True)
        return ""
    if bundle not in TASKS:
        raise ValueError(f"label-efficiency: unknown bundle {bundle!r}; choose one of {sorted(TASKS)}")
    reserved = sorted({"output_dir", "bundle_root", "ckpt_dir", "seed", "pretrained_path"} & set(overrides))
    if reserved:
        raise ValueError(f"label-efficiency: --{reserved[0]} is set by the study per run; use --out for the study "
                         "folder and --arms / --weights for the initialisations")
    task = TASKS[bundle]
    max_epochs = task.max_epochs if max_epochs is None else as_count(max_epochs, "label-efficiency: --max_epochs")
    seed_list = tuple(range(int(seeds))) if isinstance(seeds, int) else parse_list(seeds, int, "seeds")
    arm_list = parse_list(arms, str, "arms")
    if str(pretrained).lower() in ("", "none", "scratch"):
        arm_list = tuple(a for a in arm_list if a != "pretrained")
    design = StudyDesign(parse_list(fractions, float, "fractions"), seed_list, arm_list)
    if interval not in ("t", "bootstrap"):
        raise ValueError(f"label-efficiency: --interval must be t or bootstrap, got {interval!r}")
    try:  # checked here, not when the results are computed after every run
        coverage = float(confidence)
    except (TypeError, ValueError):
        coverage = float("nan")
    if not 0 < coverage < 1:
        raise ValueError(f"label-efficiency: --confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    confidence = coverage
    given = pretrain_lr
    try:  # text from the command line is a number to check, not one to refuse
        pretrain_lr = float(pretrain_lr) if isinstance(pretrain_lr, str) else pretrain_lr
    except ValueError:
        pass
    if (wording := range_problem("pretrain_lr", pretrain_lr)) is not None:  # a rate of 0 trains nothing, inf diverges
        raise ValueError(f"label-efficiency: --pretrain_lr must be {wording}, e.g. 5e-4, got {given!r}")
    jobs, pretrain_epochs = as_count(jobs, "label-efficiency: --jobs"), as_count(pretrain_epochs, "label-efficiency: --pretrain_epochs")
    if epoch_iterations is not None:
        epoch_iterations = as_count(epoch_iterations, "label-efficiency: --epoch_iterations")
    given = _parse_weights(weights)
    if "pretrained" in arm_list and str(pretrained).lower() != "auto" and "pretrained" not in given:
        given["pretrained"] = str(pretrained)
    unknown = sorted(set(given) - set(arm_list) - {"pretrained"})
    if unknown or "scratch" in given:
        raise ValueError(f"label-efficiency: --weights names {unknown or ['scratch']}, which is not a pretrained "
                         f"arm of --arms {list(arm_list)}")
    # run folders are named by arm, fraction and seed: one folder per bundle, so that two studies never collide
    out = f"outputs/label_efficiency/{bundle}" if out is None else out
    # a folder option that is a file fails inside MONAI once pretraining has started: refused before any work
    check_folders({"out": out, "pretraining_dir": pretraining_dir})
    check_study_bundle(out, bundle)
    bundle_root = (Path(bundles_dir) / bundle if bundles_dir
                   else repository_bundle(bundle, "label-efficiency", "--bundles_dir"))
    root = bundle_root.parent
    if not (bundle_root / "configs").is_dir():
        raise FileNotFoundError(f"label-efficiency: bundle folder {bundle_root} not found; pass --bundles_dir")
    overlays = task.small_configs if small else ()
    config_files = _ConfigFiles(bundle_root, overlays)
    if overrides:  # a misspelled option (--fraction) would be an id MONAI adds silently, and the study the default
        options = [p for p, v in inspect.signature(label_efficiency).parameters.items() if v.kind != v.VAR_KEYWORD]
        check_overrides("label-efficiency", bundle, overrides,
                        [config_files(task.train_configs), config_files(task.eval_configs)], options)
    # --pretrained auto at the full scale fine-tunes from the pretraining bundle's own export, beside this bundle
    shipped = root / "unimiss_pretraining" / "models" / "model.pt"
    auto = "pretrained" in arm_list and "pretrained" not in given and not small and shipped.is_file()
    # weights that cannot initialise the network would fail every run of their arm, after the scratch runs trained
    check_weights({**given, **({"pretrained": str(shipped)} if auto else {})}, arm_list,
                  "pretrained" not in _parse_weights(weights), small,
                  study_variant(config_files(task.train_configs), {**(task.small if small else {}), **overrides}),
                  auto=auto)
    out = Path(out).resolve()
    check_results_are_ours(out)  # before hours of runs, not after them
    started = time.perf_counter()

    # the weights of every arm, made or found once for the whole study
    weight_paths: dict[str, str | None] = {"scratch": None}
    provenance: dict[str, dict] = {"scratch": {"description": ARMS["scratch"].description, "weights": None}}
    pre_root = Path(pretraining_dir).resolve() if pretraining_dir else out / "pretraining"
    for arm in arm_list[1:]:
        record = None
        if arm in given:
            path = str(Path(given[arm]).resolve())
        elif arm == "pretrained" and auto:
            path = str(shipped.resolve())
        elif small:
            path, record = pretrain_arm(arm, pre_root / arm, pretrain_epochs,
                                        {"backbone#preset": "smoke", "image_size_2d": 64}, dataset_dir, root,
                                        **{"train#lr": float(pretrain_lr)})
        else:
            raise FileNotFoundError(f"label-efficiency: no weights for arm {arm} at the full scale; pass "
                                    f"--weights {arm}=PATH (a unimiss_pretraining export)")
        weight_paths[arm] = path
        provenance[arm] = {"description": ARMS[arm].description, "weights": _display_path(path, out),
                           "sha256": sha256_file(path), "pretraining": record}

    common = {**(task.small if small else {}), **overrides, "dataset_dir": dataset_dir,
              "max_epochs": int(max_epochs), "val_interval": int(max_epochs)}
    if epoch_iterations is not None:
        common["train#trainer#epoch_length"] = int(epoch_iterations)
        common.update({k: v.format(n=int(epoch_iterations)) for k, v in task.iteration_schedule.items()})

    # the training split as the bundle itself reads it (paths resolved, labels in the form its loss expects)
    reader = ConfigWorkflow(config_file=config_files(task.train_configs), workflow_type="train",
                            bundle_root=str(out), **common)
    training = list(reader.parser.get_parsed_content("train#dataset#data"))
    strata = [json.dumps(item.get("label"), sort_keys=True, default=str) for item in training] if task.stratify else None
    plan = design.runs(len(training), strata)
    # the data by content, not by folder name: runs made on another build of the sample set are trained again
    data_sha256 = sha256_datalist(reader.parser.get_parsed_content("datalist"))
    settings = {arm: {"bundle": bundle, "small": bool(small), "overrides": common, "overlays": list(overlays),
                      "weights_sha256": provenance[arm].get("sha256"), "data_sha256": data_sha256,
                      # only when set, so the fingerprints of studies without it stay what they were
                      **({"eval_overrides": task.eval_overrides} if task.eval_overrides else {})}
                for arm in arm_list}

    command = ["python", "-m", "unimiss_monai", "label-efficiency", "--bundle", bundle,
               "--fractions", ",".join(f"{f:g}" for f in design.fractions),
               "--seeds", ",".join(map(str, design.seeds)), "--arms", ",".join(arm_list),
               "--dataset_dir", str(dataset_dir), "--out", str(out), "--max_epochs", str(int(max_epochs)),
               "--epoch_iterations", str(epoch_iterations), "--pretrain_epochs", str(int(pretrain_epochs)),
               "--pretrain_lr", str(pretrain_lr), "--interval", interval, "--confidence", str(confidence),
               "--small", str(bool(small))]
    command += ["--jobs", str(int(jobs))] if int(jobs) != 1 else []
    command += [f"--weights={','.join(f'{k}={v}' for k, v in given.items())}"] if given else []
    command += [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    meta = {"bundle": bundle, "metric": task.metric, "score": task.score, "report": task.report,
            "command": shlex.join(command), "versions": versions(), "proxy": task.proxy, "split": task.split,
            "dataset_dir": str(dataset_dir), "data_sha256": data_sha256, "num_training": len(training),
            "small": bool(small),
            "max_epochs": int(max_epochs), "epoch_iterations": epoch_iterations,
            "iterations_per_run": int(max_epochs) * int(epoch_iterations) if epoch_iterations else None,
            "overrides": {k: v for k, v in common.items() if k != "dataset_dir"}, "arm_weights": provenance}

    runner = BundleRunner(task, config_files, common, training, weight_paths, out)
    with tqdm(total=len(plan), desc="label-efficiency runs", unit="run") as bar:
        def progress(record: dict) -> None:
            score = f"{task.metric} {record['score']:.3f}" if "score" in record else "failed"
            bar.set_postfix_str(f"{record['run_id']}: {score}{' (kept)' if record.get('reused') else ''}")
            bar.update(1)

        records = run_study(plan, runner, out, settings, progress, jobs=int(jobs))
    results = build_results(records, design, meta, confidence=confidence, method=interval)
    path = write_results(results, out)
    if not any(r.get("status") == "ok" for r in records):
        raise RuntimeError(f"label-efficiency: every run failed; first error: {results['failures'][0]['error']} "
                           f"(see {path})")
    for per_fraction in results["paired_differences"].values():
        for f, d in per_fraction.items():
            print(f"[label-efficiency] fraction {f}: {d['conclusion']}", flush=True)
    if not results["paired_differences"]:
        print(f"[label-efficiency] --arms {arm_list[0]} alone: its learning curve, no paired difference; rerun with "
              f"--arms {arm_list[0]},pretrained to compare (its runs are kept)", flush=True)
    if results["failures"]:
        print(f"[label-efficiency] {len(results['failures'])} of {len(records)} runs failed (rerun to retry): "
              + "; ".join(f"{r['run_id']}: {r['error']}" for r in results["failures"]), flush=True)
    print(f"[label-efficiency] {path}  {out / 'label_efficiency.png'}  {out / 'label_efficiency.md'}  "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    if results["failures"]:  # the study is incomplete: a scripted run must not exit 0 on it
        raise RuntimeError(f"label-efficiency: {len(results['failures'])} of {len(records)} runs failed, listed in "
                           f"{path} (the others are counted there); rerun the same command to retry them")
    return str(path)
