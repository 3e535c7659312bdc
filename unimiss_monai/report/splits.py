"""Which split of its datalist an evaluation scored, and how the report names those cases: only the test split is
called held out, and only when none of its images is in the training or validation split too (the evaluation records
how many are). A validation split was not trained on but chose the checkpoint; a training split was trained on.

The split is the one the evaluation's own file records (``split`` in ``segmentation_report.json`` or
``metrics.json``); for a file from before it was recorded, the ``--eval_split`` of the step's recorded command, else
the default of the bundle's ``configs/evaluate.json``.
"""

from __future__ import annotations

from unimiss_monai.data.datalists import SHARED_KEY

from .run_folder import RunFolder, step_option

__all__ = ["EVAL_SPLITS", "Split", "case_words", "evaluated_split", "held_out", "split_words"]

#: the split each bundle's configs/evaluate.json scores when its command sets no --eval_split: the CT slabs it
#: scores are the validation ones that chose the checkpoint, so they must not be called held out
EVAL_SPLITS = {"ct_segmentation": "validation", "cxr_segmentation": "test", "ct_classification": "test",
               "cxr_classification": "test"}


class Split(str):
    """A split's name, with ``shared_with``: per split that fitted the model, how many of its scored images that split
    lists too (empty where there are none, or the evaluation did not record them)."""

    shared_with: dict[str, int] = {}


def evaluated_split(run: RunFolder, stage: str, report=None) -> Split:
    """The split the ``<stage>_evaluate`` step scored: the one its evaluation file ``report`` (parsed) records, else its
    recorded command's ``--eval_split``, else the bundle's default (:data:`EVAL_SPLITS`); with the numbers of its
    images in the training or validation split too, as the file records them."""
    recorded = report.get("split") if isinstance(report, dict) else None
    if isinstance(recorded, str) and recorded:
        name = recorded
    else:
        given = step_option(run.root, f"{stage}_evaluate", "--eval_split")
        name = given[0] if given is not None else EVAL_SPLITS.get(stage, "test")
    split = Split(name)
    shared = report.get(SHARED_KEY) if isinstance(report, dict) else None
    split.shared_with = {str(k): v for k, v in shared.items() if isinstance(v, int) and v > 0} if isinstance(
        shared, dict) else {}
    return split


def held_out(split: str) -> bool:
    """Whether the cases of ``split`` are held out: the test split, none of whose images the training or validation
    split lists."""
    return split == "test" and not getattr(split, "shared_with", {})


def split_words(split: str, noun: str) -> str:
    """The scored cases of ``split`` named with ``noun`` (``"slab(s)"``, ``"DRRs"``, ``"cases"``), saying whether they
    are held out: ``"held-out test DRRs"``, ``"training DRRs (trained on, so not held out)"``."""
    shared = getattr(split, "shared_with", {})
    where = " and ".join(f"{n} in the {other} split" for other, n in shared.items())
    if split == "test":
        return f"test {noun} ({where} too, so not held out)" if shared else f"held-out test {noun}"
    if split == "validation":
        return (f"validation {noun} ({where} too, and they chose the checkpoint, so not held out)" if shared
                else f"validation {noun} (not trained on, but they chose the checkpoint, so not held out)")
    if split == "training":
        return f"training {noun} (trained on, so not held out)"
    return f"{noun} of the {split!r} split (not the test split, so not called held out)"


def case_words(split: str) -> str:
    """The short name of ``split``'s cases in a table caption: ``"held-out case(s)"`` for the test split only."""
    if split == "test" and not held_out(split):
        return "test case(s), some also in the training or validation split"
    return "held-out case(s)" if split == "test" else f"{split} case(s)"
