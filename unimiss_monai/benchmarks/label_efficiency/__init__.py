"""The label-efficiency study: does pretraining help? Paired runs of a fine-tuning bundle from scratch and from
pretrained weights, at several label fractions and seeds, and the paired difference with its interval.

``design`` (arms, seeds, fractions, paired subsets), ``statistics`` (paired difference and interval), ``study``
(resumable runs, results as a function of the run records), ``runner`` (one bundle run), ``pretrain`` (an arm's
weights), ``plot`` and ``table`` (figure and docs table), ``command`` (the CLI entry ``label_efficiency``).
"""

from unimiss_monai.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "ARMS": "unimiss_monai.benchmarks.label_efficiency.design",
    "StudyDesign": "unimiss_monai.benchmarks.label_efficiency.design",
    "subset_indices": "unimiss_monai.benchmarks.label_efficiency.design",
    "TASKS": "unimiss_monai.benchmarks.label_efficiency.tasks",
    "Task": "unimiss_monai.benchmarks.label_efficiency.tasks",
    "paired_difference": "unimiss_monai.benchmarks.label_efficiency.statistics",
    "mean_interval": "unimiss_monai.benchmarks.label_efficiency.statistics",
    "run_study": "unimiss_monai.benchmarks.label_efficiency.study",
    "build_results": "unimiss_monai.benchmarks.label_efficiency.study",
    "label_efficiency": "unimiss_monai.benchmarks.label_efficiency.command",
    "write_results": "unimiss_monai.benchmarks.label_efficiency.command",
})

__all__ = ["ARMS", "StudyDesign", "TASKS", "Task", "build_results", "label_efficiency", "mean_interval",
           "paired_difference", "run_study", "subset_indices", "write_results"]
