"""One fine-tuning run of a bundle through ``monai.bundle``: train on a subset, then score the test split with the
bundle's own evaluate config. The checkpoint folder is passed explicitly to both steps, so an overlay that moves it
(e.g. under ``output_dir``) cannot make the evaluation read another run's model."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from unimiss_monai.benchmarks.label_efficiency.design import RunSpec
from unimiss_monai.benchmarks.label_efficiency.tasks import Task, per_structure, read_score

__all__ = ["BundleRunner"]


class BundleRunner:
    """``runner(spec, run_dir)`` for :func:`~unimiss_monai.benchmarks.label_efficiency.study.run_study`.

    Args:
        task: the bundle's :class:`Task`.
        config_files: ``config_files(names)`` -> paths of the bundle's configs (with the small-scale overlays).
        common: ids set on every run (scale, budget, ``dataset_dir``).
        training: the training split as the bundle reads it; a run trains on ``training[i]`` for ``i`` in its
            subset.
        weights: per arm, the weights to start from (``None``: the bundle's random initialisation).
        study_dir: the study folder; report paths in the records are relative to it.
    """

    def __init__(self, task: Task, config_files, common: Mapping, training: Sequence, weights: Mapping[str, str | None],
                 study_dir: str | os.PathLike) -> None:
        self.task, self.config_files, self.common = task, config_files, dict(common)
        self.training, self.weights, self.study_dir = list(training), dict(weights), Path(study_dir)

    def _workflow(self, names, kind: str, run_dir: Path, **ids):
        from monai.bundle import ConfigWorkflow

        workflow = ConfigWorkflow(config_file=self.config_files(names), workflow_type=kind, bundle_root=str(run_dir),
                                  **self.common, ckpt_dir=str(run_dir / "models"), **ids)
        workflow.initialize()
        workflow.run()
        workflow.finalize()

    def __call__(self, spec: RunSpec, run_dir: Path) -> dict:
        subset = [self.training[i] for i in spec.indices]
        self._workflow(self.task.train_configs, "train", run_dir, seed=spec.seed,
                       pretrained_path=self.weights[spec.arm], **{"train#dataset#data": subset})
        # what the evaluation records as the split it scored: the CT task's overrides score validation and test slabs
        scored = {"eval_split": "validation+test"} if "validate#dataset#data" in self.task.eval_overrides else {}
        self._workflow(self.task.eval_configs, "eval", run_dir, seed=spec.seed, pretrained_path=None,
                       output_dir=str(run_dir / "report"), **self.task.eval_overrides, **scored)
        report = run_dir / "report" / self.task.report
        result = {"score": read_score(self.task, report), "report": os.path.relpath(report, self.study_dir)}
        if (per := per_structure(self.task, report)) is not None:
            result["per_structure"] = per
        return result
