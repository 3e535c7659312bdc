"""Publish the best model of a finished fine-tuning run to ``models/model.pt``, keeping the previous one."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from ignite.engine import Engine, Events

from unimiss_monai.data.writers import atomic_path, keep_previous, save_json
from unimiss_monai.handlers.best_model_saver import BestModelSaver
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.hashing import sha256_file
from unimiss_monai.utils.serialization import load_torch_file

__all__ = ["PublishBestModel", "published_record", "unpublished_best_model"]

logger = logging.getLogger(__name__)


class PublishBestModel:
    """Ignite handler: when the trainer completes (rank 0 only), copy ``saver``'s best model to ``path``.

    During training the best model lives in the run's own folder (:class:`BestModelSaver`), so a run that is killed,
    fails or diverges never touches ``path``: the weights there stay those of the last finished run. At the end the
    best model is read back (weights-only, every tensor finite) and copied in atomically; an existing ``path`` is kept
    as ``<path>.prev`` first. A run that saved no best model (no validation ran) leaves ``path`` as it was. A finished
    run killed before this copy (or whose copy failed) publishes its best model when run again, without training
    (:func:`unpublished_best_model`); a copy that happened is recorded in the run's folder (:func:`published_record`),
    so that deleting or replacing ``path`` later is never taken for a publish still to do.

    Args:
        saver: the run's :class:`BestModelSaver` (attached to the evaluator).
        path: where the finished run's model goes, e.g. ``<ckpt_dir>/model.pt``.

    Examples::

        {"_target_": "unimiss_monai.handlers.PublishBestModel", "saver": "@validate#handlers#2",
         "path": "$@ckpt_dir + '/model.pt'"}
    """

    def __init__(self, saver: BestModelSaver, path: str | os.PathLike) -> None:
        self.saver, self.path = saver, Path(path)

    def attach(self, engine: Engine) -> None:
        if not isinstance(self.saver, BestModelSaver):
            # evaluate.json reuses train.json (its trainer is built, not run) with other validation handlers
            logger.warning(
                "PublishBestModel: saver is a %s, not the run's BestModelSaver: nothing will be published to %s; check "
                "the reference to it in validate#handlers", type(self.saver).__name__, self.path,
            )
            return
        self.saver.published_to = self.path  # so that a rerun of a finished run can tell whether this copy happened
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if getattr(engine.state, "rank", 0) != 0:
            return
        source = self.saver.path
        if not self.saver.saved or not source.is_file():
            logger.warning("no best model was saved (no validation ran): %s is left as it was", self.path)
            return
        bad_scores = [score for score, _ in self.saver.state_dict()["_saved"] if not math.isfinite(score)]
        if bad_scores:
            # a run resumed from a checkpoint of a version that saved a model at a NaN score
            raise ValueError(f"not publishing {source}: it was chosen at a key metric of {bad_scores[0]}, which "
                             f"chooses nothing; {self.path} is left as it was")
        # read back before publishing: a damaged or diverged file must not replace a good model
        bad = first_non_finite(load_torch_file(source, "best model"))
        if bad is not None:
            raise FloatingPointError(f"not publishing {source}: {bad} holds NaN or Inf; {self.path} is left as it was")
        previous = keep_previous(self.path)
        with atomic_path(self.path) as tmp:
            shutil.copyfile(source, tmp)
            digest = sha256_file(tmp)
        # in the run's own folder: models/model.pt may later be deleted or replaced (by the user, or another run's
        # publish), and a rerun must not take that for a publish that never happened
        try:
            save_json({"sha256": digest, "to": str(self.path)}, published_record(source))
        except OSError as err:  # the model is published: failing the run now would have it rerun, and retrain
            logger.warning("published %s, but could not record it in %s (%s): a rerun after %s is deleted or replaced "
                           "publishes it again instead of training", self.path, published_record(source),
                           err.strerror or err, self.path)
        logger.info("published the best model %s to %s%s", source, self.path,
                    f" (previous kept as {previous})" if previous else "")


def published_record(best_model: Path) -> Path:
    """The file beside the run's best model that records, once :class:`PublishBestModel` copied it, the SHA-256 it
    published and where to: ``checkpoints/best_model.pt`` -> ``checkpoints/best_model.published.json``."""
    return best_model.with_suffix(".published.json")


def _published(best_model: Path, digest: str, target: Path) -> bool:
    """Whether :func:`published_record` says the model of SHA-256 ``digest`` was published to ``target`` (an
    unreadable record, as a kill while a version without it wrote nothing, says nothing; one of another target, a
    rerun's new --ckpt_dir, says it is still to be published there)."""
    try:
        record = json.loads(published_record(best_model).read_text())
        return (record.get("sha256") == digest and isinstance(record.get("to"), str)
                and os.path.realpath(record["to"]) == os.path.realpath(target))
    except (OSError, ValueError, AttributeError):
        return False


def unpublished_best_model(saver: BestModelSaver, recorded: Mapping | None) -> tuple[bool, str] | None:
    """Whether the best model of a finished run, as its resume checkpoint recorded it (``recorded``: ``saver``'s
    ``state_dict`` then), is still to be published to ``saver.published_to``: the run was killed after its last
    checkpoint but before :class:`PublishBestModel` copied the file, or the copy failed (a full disk).

    Returns None where the run is to be trained anew without a word more: the checkpoint records no SHA-256 (written
    before it was recorded, or no best model was saved), nothing publishes this run's model, or the publish happened
    (:func:`published_record` names that model, or the published file is that model), even if the published file was
    deleted or replaced since (by the user, or another run's publish to the same place). Otherwise ``(True, what)``:
    the file in the run's folder is still the one recorded, to be published instead of training; or ``(False,
    reason)``: it is gone or another, so the run trains anew.
    """
    digest = recorded.get("sha256") if isinstance(recorded, Mapping) else None
    target = saver.published_to
    if digest is None or target is None or _published(saver.path, digest, target):
        return None
    if target.is_file() and sha256_file(target) == digest:
        return None
    scores = [score for score, _ in recorded.get("_saved", [])]
    metric = f" (key metric {scores[0]:.4g})" if scores else ""
    chosen = f"the best model of the finished run{metric}"
    if not saver.path.is_file():
        return False, (f"{saver.path}, {chosen}, was never published to {target} and is gone: training anew")
    if sha256_file(saver.path) != digest:
        return False, (f"{saver.path} is not {chosen}, which was never published to {target} (the file was replaced "
                       "or damaged since; its SHA-256 differs from the one the checkpoint recorded): training anew")
    return True, (f"{saver.path} is {chosen}, never published to {target} (the run stopped, or the copy failed, "
                  "after its last checkpoint)")
