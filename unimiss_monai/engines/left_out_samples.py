"""The samples a pretraining run left out because they failed to load: remembered (one entry per file), pooled over
``torchrun`` processes, and named at the run's end by :func:`log_export`, the bundle's ``finalize``, which then fails
the run, as the DRR and inference bundles fail for the cases that failed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from unimiss_monai.networks.publish import export_next_step
from unimiss_monai.utils.dist import gather_objects, in_process_group

__all__ = ["FAILED_KEPT", "SamplesLeftOut", "log_export", "pool_failures", "remember_failures"]

# the pretraining run's logger: the export line stays beside the run's other lines
logger = logging.getLogger("unimiss_monai.engines.pretraining")

#: distinct failed samples a run names at its end (each failure is also logged when it happens); one more is kept,
#: so that the message can tell there were more
FAILED_KEPT = 20


class SamplesLeftOut(RuntimeError):
    """A pretraining run finished and exported its backbone, but some samples failed to load and were left out."""


def _sample_of(entry: str) -> str:
    """The sample part of a loader's ``"<file or index> (<reason>)"`` entry.

    The reason is the entry's last parenthesised group, matched from the end, so that a file name with parentheses of
    its own stays whole: ``scan (1).nii.gz`` and ``scan (2).nii.gz`` (how browsers name repeated downloads) are two
    samples. A reason with unbalanced parentheses (cut at 300 characters, or ``got 3) values``) is cut at the entry's
    last " (" instead, which may leave part of the reason in the sample or cut a file name with parentheses short;
    the same file failing the same way still gives the same sample.
    """
    depth = 0
    for i in range(len(entry) - 1, 0, -1) if entry.endswith(")") else ():
        depth += {")": 1, "(": -1}.get(entry[i], 0)
        if depth == 0:
            if entry[i - 1] == " ":
                return entry[: i - 1]
            break
    return entry.rsplit(" (", 1)[0]


def remember_failures(failed: list[str], entries: Sequence[str]) -> None:
    """Append to ``failed`` each entry whose sample it does not hold yet (one per file: the first reason), up to
    ``FAILED_KEPT + 1`` entries."""
    seen = {_sample_of(f) for f in failed}
    for entry in entries:
        if len(failed) > FAILED_KEPT:
            return
        if _sample_of(entry) not in seen:
            failed.append(entry)
            seen.add(_sample_of(entry))


def pool_failures(state: Any, agreed: int) -> int:
    """Under ``torchrun``, set ``state.skipped_samples`` and ``state.failed_samples`` to those of every process (a
    collective: every process calls it at the same point); ``agreed`` is the count they agreed on at the last call
    (or found in the checkpoint they resumed). Returns the new agreed count; outside a process group, this process's.
    """
    if in_process_group():
        parts = gather_objects([(state.skipped_samples - agreed, state.failed_samples)])
        state.skipped_samples = agreed + sum(n for n, _ in parts)
        merged: list[str] = []
        for _, names in parts:
            remember_failures(merged, names)
        state.failed_samples = merged
    return state.skipped_samples


def log_export(trainer: Any, model_path: str) -> None:
    """Log where the run exported the teacher backbone, how the fine-tuning bundles take it (publish it; a smoke-size
    export: pass it as ``--pretrained_path``), and how many
    samples were skipped (the bundle's ``finalize``).

    Raises:
        SamplesLeftOut: when samples were skipped (after the log line): the run trained without them, so the bundle
            exits non-zero, naming them.
    """
    logger.info("exported backbone: %s (%s) | skipped samples: %d", model_path, export_next_step(model_path),
                trainer.state.skipped_samples)
    n, failed = trainer.state.skipped_samples, list(getattr(trainer.state, "failed_samples", []))
    if not n:
        return
    if not failed:
        named = "which was not recorded (a checkpoint of version 0.3.11 or earlier): the log of that run names them"
    elif len(failed) > FAILED_KEPT:
        first = "; ".join(failed[:FAILED_KEPT])
        named = f"more than {FAILED_KEPT} different samples, the first {FAILED_KEPT}: {first}"
    else:
        named = f"{len(failed)} different sample(s): " + "; ".join(failed)
    raise SamplesLeftOut(
        f"the run finished and exported {model_path}, but left out {n} sample load(s) that failed, {named}; fix or "
        "remove them in the datalist and train again to include them (in a new --output_dir, or with "
        "--resume_finished false: this finished run, resumed, would report them again)"
    )
