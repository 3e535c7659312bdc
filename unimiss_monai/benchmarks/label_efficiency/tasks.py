"""What the label-efficiency study trains and reads for each fine-tuning bundle: its configs, its report and score,
its small (2-CPU) scale, and what its sample set can and cannot show (the ``proxy`` text of the results)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TASKS", "Task", "per_structure", "read_score", "scored_items"]


@dataclass(frozen=True)
class Task:
    """How to run and score one bundle in the label-efficiency study.

    Attributes:
        train_configs / eval_configs: config files of the bundle that train it and score its test split.
        report: file the evaluate run writes under its ``output_dir``.
        metric: display name of the score (``"Dice"``, ``"macro AUC"``), always on a 0-1 scale.
        score: how to read the score: ``"mean_over_structures:<metric>"`` or ``"key:<metric>"``.
        small: overrides of the default (small, CPU) scale.
        small_configs: bundle overlays layered on every config at the small scale.
        proxy: what the sample set is, and what a study on it cannot show.
        iteration_schedule: ids whose value depends on the iterations per epoch, as templates of ``{n}`` (set when
            the study fixes the iterations per epoch, so the learning-rate schedule spans the run's real length).
        stratify: draw the training subsets class by class (classification), so a small subset keeps every class.
        max_epochs: training epochs of a run at the small scale (``label-efficiency --max_epochs`` overrides it).
        eval_overrides: ids of the scoring run only, e.g. which items it scores.
        split: what the scored items are, for the results (``"test"``: the bundle's test split).
    """

    train_configs: tuple[str, ...]
    eval_configs: tuple[str, ...]
    report: str
    metric: str
    score: str
    small: dict = field(default_factory=dict)
    small_configs: tuple[str, ...] = ()
    proxy: str = ""
    iteration_schedule: dict = field(default_factory=dict)
    stratify: bool = False
    max_epochs: int = 16
    eval_overrides: dict = field(default_factory=dict)
    split: str = "test"


_SEGMENTATION_REPORT = dict(train_configs=("train.json",), eval_configs=("train.json", "evaluate.json"),
                            report="segmentation_report.json", metric="Dice", score="mean_over_structures:dice")
_CLASSIFICATION_REPORT = dict(train_configs=("train.json",), eval_configs=("train.json", "evaluate.json"),
                              report="metrics.json", metric="macro AUC", score="key:macro_auc",
                              small_configs=("smoke.yaml",), stratify=True)

TASKS: dict[str, Task] = {
    "unimiss_cxr_segmentation": Task(
        **_SEGMENTATION_REPORT,
        small={
            "spatial_size": [64, 64], "batch_size": 4, "num_workers": 0,
            # the one smoke network of the package (unimiss_monai.networks.tiny_overrides)
            "network_def#preset": "smoke",
            "learning_rate": 1e-3,
            # the deterministic loading/resizing runs once per image, not once per iteration
            "cache": "memory", "train#dataset#progress": False,
        },
        proxy=("DRRs of variants of one chest CT (the real sample CT, or the phantom when built with --synthetic) at "
               "random C-arm poses. Each split has anatomies of its own (body scaled 0.88-1.12 left-right and "
               "antero-posteriorly, 0.92-1.08 cranio-caudally, heart magnified 1.0-1.2 in-plane), and the test poses "
               "use oblique-angle bands that no training pose uses, so test images show body shapes, heart sizes and "
               "poses that no training image shows. The variants share one patient's lungs, bones and texture: the "
               "study measures generalisation to new body proportions, not to new patients."),
    ),
    "unimiss_ct_segmentation": Task(
        **_SEGMENTATION_REPORT,
        small_configs=("smoke.yaml",),
        small={"num_workers": 0, "train#dataset#progress": False,
               # the smallest scale measured at which training from scratch finds more than the lungs on held-out slabs
               # (the smoke overlay's 5 mm voxels and 400 iterations found the lungs only, in both arms): 3 mm voxels,
               # two windows per slab and iteration, 600 iterations (24 epochs x 25), found with 16x96x96 windows;
               # 16x64x64 ones then scored the same (scratch, 3 slabs, 5 seeds: 0.133 against 0.136 mean Dice) in 64 %
               # of the time
               "pixdim": [3.0, 3.0, 3.0], "roi_size": [16, 64, 64], "num_samples": 2, "learning_rate": 2e-3,
               # the bundle freezes a pretrained encoder for 10 of its 300 epochs: about 1 epoch of the study's 24
               "freeze_encoder_epochs": "$1 if @pretrained_path else 0"},
        max_epochs=24,
        # the bundle's warm-up cosine counts iterations as epochs x len(dataloader); the study cycles small subsets
        iteration_schedule={"train#lr_scheduler#warmup_steps": "$@warmup_epochs * {n}",
                            "train#lr_scheduler#t_total": "$@max_epochs * {n}"},
        # the one test slab holds 4 of the 9 organs; the validation slabs are held out too (the study validates
        # once, at the end of a run, so nothing is chosen on them): all three are scored
        eval_overrides={"validate#dataset#data": "$monai.data.load_decathlon_datalist(@datalist, True, 'validation')"
                                                 " + monai.data.load_decathlon_datalist(@datalist, True, 'test')",
                        # the study reads Dice only; the surface distances of 20 early models took most of the scoring
                        "report_surface_metrics": False},
        split="the validation and test slabs",
        proxy=("Axial slabs (~55 mm) of one chest-abdomen CT: three training slabs, the other three held out and "
               "scored. Every fraction below 1.0 is one labelled slab, so 0.05, 0.1 and 0.25 draw the same slab for "
               "a seed and are one training (the study runs it once); the held-out slabs show other levels of the "
               "same patient."),
    ),
    "unimiss_cxr_classification": Task(
        **_CLASSIFICATION_REPORT,
        proxy=("AP DRRs of one chest CT at random poses, with inserted nodules and a magnified heart "
               "(cardiomegaly), multi-label. The findings are simulated and the anatomy is one patient's, so the "
               "study measures detection of these synthetic findings, not of real disease across patients."),
    ),
    "unimiss_ct_classification": Task(
        **_CLASSIFICATION_REPORT,
        proxy=("Crops of one chest CT centred on random lung voxels, each location once normal, once with an "
               "inserted nodule (6-20 mm) and once with a mass (32-50 mm), the lesion within 6 mm of the crop's centre "
               "(crops centred on candidate locations, as in a nodule detector's second stage), so location does not "
               "predict the label; held-out crops come from the other half of the lung (no voxel shared with "
               "training crops). One patient, simulated lesions, and classes that differ by lesion size: the study "
               "measures learning to see simulated lesions at another level of the same chest, not real findings "
               "across patients."),
    ),
}


def scored_items(split: str) -> tuple[str, str]:
    """How the results name what a study scored: ``(the items, the score's adjective)``, e.g.
    ``("test split", "test")`` for the bundle's test split, ``("held-out items, <split>", "held-out")`` otherwise."""
    return ("test split", "test") if split == "test" else (f"held-out items, {split}", "held-out")


def read_score(task: Task, report_path: Path) -> float:
    """The task's score (0-1) from an evaluation report; ``ValueError`` naming the file when it has none."""
    report = json.loads(Path(report_path).read_text())
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


def per_structure(task: Task, report_path: Path) -> dict | None:
    """``{structure: score or None}`` of a segmentation report; ``None`` for a task scored by one key."""
    if not task.score.startswith("mean_over_structures:"):
        return None
    metric = task.score.split(":")[1]
    return {name: v.get(metric) for name, v in json.loads(Path(report_path).read_text())["mean"].items()}
