"""Publish the best model of a finished fine-tuning run to ``models/model.pt``, keeping the previous one."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path

from ignite.engine import Engine, Events

from unimiss_monai.data.writers import atomic_path, keep_previous
from unimiss_monai.handlers.best_model_saver import BestModelSaver
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.serialization import load_torch_file

__all__ = ["PublishBestModel"]

logger = logging.getLogger(__name__)


class PublishBestModel:
    """Ignite handler: when the trainer completes (rank 0 only), copy ``saver``'s best model to ``path``.

    During training the best model lives in the run's own folder (:class:`BestModelSaver`), so a run that is killed,
    fails or diverges never touches ``path``: the weights there stay those of the last finished run. At the end the
    best model is read back (weights-only, every tensor finite) and copied in atomically; an existing ``path`` is kept
    as ``<path>.prev`` first. A run that saved no best model (no validation ran) leaves ``path`` as it was.

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
        logger.info("published the best model %s to %s%s", source, self.path,
                    f" (previous kept as {previous})" if previous else "")
