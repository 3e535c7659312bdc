"""One summary of an inference run, the same for every fine-tune bundle: which cases worked, which failed and why.

``<output_dir>/summary.json``::

    {
      "num_cases": 3, "num_ok": 2, "num_failed": 1, "model_sha256": "3f5a...",
      "cases": [
        {"case": "a.nii.gz", "status": "ok", "reason": "", "input": "/data/a.nii.gz", "output": "/out/a_seg.nii.gz"},
        {"case": "b.nii.gz", "status": "failed", "reason": "b.nii.gz: ValueError: ...", "input": "/data/b.nii.gz"}
      ]
    }

``case`` is the input path as given, ``input`` its absolute path (when it exists), ``reason`` one line (empty when the
case worked), ``output`` the file a writer made for the case, when it recorded one; ``model_sha256`` the checksum of
the model file the run loaded, when the handler is given it. A case fails when it cannot be loaded or preprocessed
(:class:`~unimiss_monai.data.TolerantDataset`), when the network forward fails
(:class:`~unimiss_monai.handlers.ForwardFailureGuard`) or when a writer cannot use its output (non-finite values, a
failed write); the writers mark it in the batch, and this handler, listed after them, reads the marks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from unimiss_monai.data.output_ledger import check_own_file, replacing_own
from unimiss_monai.data.tolerant import CASE_KEY, batch_items, failure_of
from unimiss_monai.data.writers import save_json
from unimiss_monai.handlers.forward_failure_guard import guard_forward
from unimiss_monai.utils.hashing import SCORED_MODEL_KEY, model_checksum

logger = logging.getLogger(__name__)

__all__ = ["OUTPUT_KEY", "SUMMARY_NAME", "InferenceSummary", "raise_if_failed"]

SUMMARY_NAME = "summary.json"
#: batch-item key under which a writer records the file it wrote for the case
OUTPUT_KEY = "output"


class InferenceSummary:
    """Ignite handler: record each case as ok or failed, then write ``<output_dir>/summary.json`` (atomically) and
    log the counts and every failure at the end of the run.

    List it after the writers (handlers run in the order they are attached), so that it sees the failures they
    mark. Attaching also installs :func:`~unimiss_monai.handlers.guard_forward`. When any case failed, the run raises
    ``RuntimeError`` once every other case is written (this handler's end-of-run step comes after the writers'):
    part of the work failed, and a scripted run over an archive must not exit 0 on it.

    A ``summary.json`` in ``output_dir`` that this package did not write there stops the run before its first case
    (:mod:`unimiss_monai.data.output_ledger`).

    Args:
        output_dir: folder of ``summary.json``.
        model: the model file the run loaded (the bundles' ``@ckpt_path``); its checksum, taken as the run starts, is
            recorded in ``summary.json`` (``model_sha256``), so that the report can tell whether these outputs are
            those of the model a bundle folder now holds.
    """

    def __init__(self, output_dir: str | os.PathLike, model: str | os.PathLike | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.model = model
        self.cases: list[dict[str, str]] = []
        self._checksum: str | None = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, guard_forward)
        engine.add_event_handler(Events.STARTED, lambda _: self.cases.clear())
        engine.add_event_handler(Events.STARTED, self._note_model)
        # before any case: a summary.json of the user's would stop the run only at its end
        engine.add_event_handler(Events.STARTED, lambda _: check_own_file(self.output_dir / SUMMARY_NAME, self.output_dir))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _note_model(self, engine=None) -> None:
        # as the run starts: the model was loaded by the bundle's initialize step just before
        self._checksum = model_checksum(self.model)

    def collect(self, engine) -> None:
        items = batch_items(engine.state.batch)
        # a post-processing transform (SaveCaseImaged) records its file in the output item: the evaluator keeps the
        # keys a transform adds there, not in the batch
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        outputs = outputs if len(outputs) == len(items) else [None] * len(items)
        for item, out in zip(items, outputs):
            reason = failure_of(item, out)
            case = str(item.get(CASE_KEY, ""))
            entry = {"case": case, "status": "failed" if reason else "ok", "reason": reason}
            if case and os.path.exists(case):  # the case as given may be relative to a directory a reader cannot know
                entry["input"] = os.path.abspath(case)
            written = item.get(OUTPUT_KEY) or (out.get(OUTPUT_KEY) if isinstance(out, dict) else None)
            if written and not reason:
                entry["output"] = str(written)
            self.cases.append(entry)

    def summary(self) -> dict:
        """The content of ``summary.json``."""
        failed = sum(c["status"] == "failed" for c in self.cases)
        checksum = {SCORED_MODEL_KEY: self._checksum} if self._checksum else {}
        return {"num_cases": len(self.cases), "num_ok": len(self.cases) - failed, "num_failed": failed,
                **checksum, "cases": self.cases}

    def write(self, engine=None) -> str:
        """Write ``summary.json``; returns its path."""
        summary = self.summary()
        with replacing_own(self.output_dir / SUMMARY_NAME, self.output_dir):
            path = save_json(summary, self.output_dir / SUMMARY_NAME)
        logger.info("inference: %d of %d cases ok -> %s", summary["num_ok"], summary["num_cases"], self.output_dir)
        for case in self.cases:
            if case["status"] == "failed":
                logger.warning("inference: FAILED %s: %s", case["case"], case["reason"])
        raise_if_failed("inference", summary["num_failed"], summary["num_cases"], path, "written", "the outputs of ")
        return str(path)


def raise_if_failed(stage: str, num_failed: int, num_cases: int, listed_in, done: str, of: str = "") -> None:
    """End a run in which some case failed with ``RuntimeError`` (``python -m monai.bundle run`` then exits
    non-zero): part of the work failed, and a scripted run over an archive must not exit 0 on it. Call it once
    everything of the cases that worked is written.

    Args:
        stage: the first word of the message (``"inference"``, ``"evaluation"``).
        num_failed, num_cases: the cases that failed, of all cases.
        listed_in: the file that lists each failure with its reason.
        done, of: what became of the other cases: ``"written", "the outputs of "`` ends the message with
            ``the outputs of the other 2 are written`` (``... of the other case are written`` for one), and
            ``"scored"`` with ``the other 2 are scored`` (``the other case is scored``).
    """
    if num_cases and num_failed >= num_cases:
        raise RuntimeError(f"{stage}: no case worked ({num_failed} failed, listed in {listed_in})")
    if num_failed:
        others = num_cases - num_failed
        # the verb agrees with "outputs" when ``of`` names them, else with the cases
        rest = f"{of}the other {others}" if others > 1 else f"{of}the other case"
        verb = "are" if others > 1 or of else "is"
        raise RuntimeError(
            f"{stage}: {num_failed} of {num_cases} cases failed, listed with the reason and fix in {listed_in}; "
            f"{rest} {verb} {done}"
        )
