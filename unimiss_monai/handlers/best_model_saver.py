"""The best model of a run, kept in the run's own folder: written atomically, never with NaN/Inf, resumable."""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver

from unimiss_monai.data.writers import save_torch
from unimiss_monai.utils.dist import rank_and_world
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.hashing import sha256_file

__all__ = ["BestModelSaver"]


class _AtomicFixedFileSaver(BaseSaveHandler):
    """Writes every checkpoint to one file, replacing it atomically; refuses NaN/Inf tensors."""

    def __init__(self, path: Path) -> None:
        self.path, self.sha256 = path, None

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if rank_and_world()[0] != 0:
            return
        bad = first_non_finite(checkpoint)
        if bad is not None:
            raise FloatingPointError(
                f"not saving {self.path}: {bad} holds NaN or Inf (the run diverged); the best model so far is kept"
            )
        save_torch(dict(checkpoint), self.path)
        # the file's identity, recorded in the resume checkpoint: a finished run whose publish never happened publishes
        # this file on its rerun only while it is still this one
        self.sha256 = sha256_file(self.path)

    def remove(self, filename: str) -> None:
        # the next save replaces the one file atomically; deleting it first would leave a moment with no best model
        pass


def _finite(score_function, name: str | None):
    """``score_function`` refusing a NaN or infinite score: ignite keeps the first model whatever its score, and no
    later score compares greater than NaN, so a NaN would pass its model off as the best of the run. ``name``: the
    key metric's name, by default the evaluator's (``engine.state.key_metric_name``)."""

    def score(engine):
        value = score_function(engine)
        if not math.isfinite(float(value)):
            metric = name or getattr(engine.state, "key_metric_name", None) or "key metric"
            raise ValueError(
                f"validation {metric} is {float(value)}, so no model can be chosen by it: check that the validation "
                "cases have finite outputs and that their labels make the metric defined (a ROC AUC needs positive "
                "and negative cases of at least one class; a Dice needs a structure in some case)"
            )
        return value

    return score


class BestModelSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` keeping the best model by the key metric in one run-local file.

    Compared with ``CheckpointSaver(save_key_metric=True, key_metric_filename=...)``: the file is replaced atomically
    (a kill while saving leaves the previous best), a model holding NaN or Inf raises ``FloatingPointError`` instead of
    being saved, a NaN or infinite key metric raises ``ValueError`` (no model can be chosen by it), and
    :meth:`state_dict` returns the score and the SHA-256 of the saved model, so a resumed run (see
    :class:`~unimiss_monai.handlers.TrainingCheckpoint`) replaces it only with a better one, and a finished run killed
    before its publish publishes this file when run again. Publishing the best model of a finished run is
    :class:`~unimiss_monai.handlers.PublishBestModel`'s job; ``published_to`` is where it copies it (set by its
    ``attach``; None: nowhere).

    Args:
        save_dir: folder of the file, e.g. ``<output_dir>/checkpoints``.
        save_dict: objects to save, e.g. ``{"model": network, "info": CheckpointInfo(...)}``.
        key_metric_filename: the file name. Defaults to ``best_model.pt``.
        kwargs: the other ``CheckpointSaver`` key-metric arguments (``key_metric_name``, ``key_metric_negative_sign``,
            ``key_metric_greater_or_equal``, ``name``, ``file_prefix``); ``save_key_metric`` must stay true.
    """

    def __init__(self, save_dir: str | os.PathLike, save_dict: dict, key_metric_filename: str = "best_model.pt", **kwargs) -> None:
        if not kwargs.pop("save_key_metric", True):
            raise ValueError("BestModelSaver saves by the key metric; use MONAI's CheckpointSaver for other schedules")
        super().__init__(save_dir=str(save_dir), save_dict=save_dict, save_key_metric=True,
                         key_metric_filename=key_metric_filename, key_metric_n_saved=1, **kwargs)
        self.path = Path(save_dir) / key_metric_filename
        self._key_metric_checkpoint.save_handler = _AtomicFixedFileSaver(self.path)
        self._key_metric_checkpoint.score_function = _finite(self._key_metric_checkpoint.score_function,
                                                             kwargs.get("key_metric_name"))
        self.published_to: Path | None = None

    @property
    def saved(self) -> bool:
        """Whether this run (including the part before a resume) has saved a best model."""
        return bool(self._key_metric_checkpoint._saved)

    @property
    def sha256(self) -> str | None:
        """The SHA-256 of the best model file this run (including the part before a resume) wrote; None if unknown
        (none saved, or a resume from a checkpoint written before it was recorded)."""
        return self._key_metric_checkpoint.save_handler.sha256 if self.saved else None

    def state_dict(self) -> OrderedDict:
        """The score and name of the saved model, as plain numbers and strings (a metric may be a NumPy scalar), and
        its file's ``sha256`` where known."""
        state = OrderedDict(_saved=[(float(p), str(f)) for p, f in self._key_metric_checkpoint._saved])
        if self.sha256 is not None:
            state["sha256"] = self.sha256
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        super().load_state_dict(state_dict)
        self._key_metric_checkpoint.save_handler.sha256 = state_dict.get("sha256")
