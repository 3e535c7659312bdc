"""Full training checkpoints for exact resume, and the exported teacher backbone."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from unimiss_monai.data.writers import keep_previous
from unimiss_monai.data.writers import save_torch as atomic_torch_save  # the name this module has always exported
from unimiss_monai.handlers.best_model_saver import BestModelSaver
from unimiss_monai.handlers.checkpoint_info import settings_mismatch
from unimiss_monai.handlers.checkpoint_position import finished, planned_epochs, position_problem
from unimiss_monai.handlers.publish_best_model import unpublished_best_model
from unimiss_monai.handlers.rng_state import capture_rng_state, rank_state, restore_rng_state
from unimiss_monai.handlers.run_record import choice_record, other_choice, other_items, plain
from unimiss_monai.networks.state_dict_diff import state_dict_differences
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.dist import broadcast_object, gather_objects
from unimiss_monai.utils.finite import first_non_finite
from unimiss_monai.utils.serialization import load_torch_file

__all__ = ["TrainingCheckpoint", "atomic_torch_save", "capture_rng_state", "restore_rng_state"]

logger = logging.getLogger(__name__)


def _lay_state_like_params(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (Adam's moments, ...) its parameter's memory layout. A checkpoint written
    before the conv weights were stored channels-last holds channels-first moments, which ``load_state_dict`` keeps;
    the values are right either way, but the multi-tensor (``foreach``) update on CUDA takes its slow per-tensor path
    when the strides of a parameter and its state differ."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


class TrainingCheckpoint:
    """Saves ``checkpoint.pt`` every ``save_every`` iterations and at the end; resumes from it at start.

    The checkpoint holds each object's ``state_dict()`` (model with teacher, optimiser, trainer position, loss centre,
    ...), the AMP scaler and the RNG states, so a run killed after a save and restarted produces the same weights as an
    uninterrupted run with the same seed (the data order and augmentations are functions of seed and position, see
    :mod:`unimiss_monai.data.loaders`; for MONAI loaders, :class:`~unimiss_monai.handlers.EpochSeed`). Only rank 0
    writes, with the generator states of every rank (each draws its own dropout and drop-path masks; saving is a
    collective, so every rank must reach it); every rank resumes its own. An engine with a ``pool_for_checkpoint()``
    method has it called on every rank first (e.g. the pretraining trainer pools the samples each rank failed to load,
    so an iteration's checkpoint names them all). The file holds only tensors, numbers, strings and containers, and
    resuming reads it weights-only. A state holding NaN or Inf is never saved: ``save`` raises ``FloatingPointError``
    and the previous checkpoint stays.

    A checkpoint further on than this run's ``max_epochs`` is refused in one line, and so is a stopped run set to
    another number of epochs where a learning-rate scheduler is among ``save_objects`` (restored, it keeps that run's
    length); without one, such a run resumes with a warning (see :mod:`~unimiss_monai.handlers.checkpoint_position`).

    With ``epoch_level``, the end-of-epoch save is registered when the run starts, after every handler attached
    before it, so it runs last at the end of an epoch and holds that epoch's validation (e.g. the score of the best
    model so far, pass its :class:`~unimiss_monai.handlers.BestModelSaver` in ``save_objects``).

    Args:
        ckpt_dir: folder of ``checkpoint.pt``.
        save_objects: name -> object with ``state_dict``/``load_state_dict`` (network, optimizer, loss with its
            centre, ...); the engine it is attached to is added as ``"trainer"`` (its position).
        save_every: iterations (epochs with ``epoch_level``) between saves (0: only at the end). A save due inside
            a gradient-accumulation window (the engine's ``mid_window``) is taken when the window closes.
        resume: load ``ckpt_dir/checkpoint.pt`` when it exists.
        export_path: where to write the exported weights (e.g. ``models/model.pt``), atomically, when the run
            completes; needs ``export_fn``. Only a finished run writes it: a killed or failed run leaves the file of an
            earlier finished run as it was, and resumes from ``checkpoint.pt``.
        export_fn: returns the state dict to export, saved as ``{"model": export_fn()}``, or a mapping with a ``"model"``
            state dict (and e.g. ``"info"``, see ``StudentTeacher.export``), saved as is.
        epoch_level: count ``save_every`` in epochs and save after all other end-of-epoch handlers.
        resume_finished: also resume a checkpoint of a run that reached its ``max_epochs`` (it can then be extended by
            raising ``max_epochs``); ``False`` starts such a run anew, so running a finished fine-tune again retrains;
            unless its best model (a :class:`~unimiss_monai.handlers.BestModelSaver` in ``save_objects``, whose
            SHA-256 the checkpoint records) was never published, as when the run was killed after its last
            checkpoint: the same run asked again then publishes that file, said in one line, and trains nothing (a
            publish that happened is recorded beside it, so a published model deleted or replaced since retrains).
        data: the run's training items (``[{"image": ..., "label": ...}]``, file paths compared as the files they name),
            recorded in the checkpoint: a run of other items (another ``dataset_dir``, an edited datalist) trains
            anew, said in a warning; resumed, it trained the rest of the epochs on the other data and published the
            result. The same items in any order resume, and so does a checkpoint without the record.
        optimiser_settings: the settings the optimiser holds once built (``{"learning_rate": ..., "weight_decay":
            ...}``), recorded in the checkpoint: resuming restores the optimiser, so a run asking for others trains on
            with the checkpoint's, which a warning names with the fix.
        seed: the run's seed, recorded in the checkpoint: a run resumed with another one draws the rest of its data
            order and augmentations from it, so its model is no uninterrupted run's of either seed; a warning says so.
        best_model_choice: what chooses the best model, recorded in the checkpoint: ``{"validation": items,
            "pretrained": the weights file the encoder starts from (None: none), "key_metric": name}``, any of them
            (see :func:`~unimiss_monai.handlers.run_record.choice_record`). A finished run whose best model was never
            published is published on its rerun only where the rerun would choose it the same way; otherwise it
            trains anew, and a warning says what changed.
    """

    FILENAME = "checkpoint.pt"

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        save_objects: Mapping[str, object],
        save_every: int = 100,
        resume: bool = True,
        export_path: str | os.PathLike | None = None,
        export_fn: Callable[[], Mapping[str, torch.Tensor]] | None = None,
        epoch_level: bool = False,
        resume_finished: bool = True,
        data: Sequence[Mapping] | None = None,
        optimiser_settings: Mapping | None = None,
        seed: int | None = None,
        best_model_choice: Mapping | None = None,
    ) -> None:
        if export_path is not None and export_fn is None:
            raise ValueError("TrainingCheckpoint: export_path needs an export_fn returning the state dict to export")
        self.path = Path(ckpt_dir) / self.FILENAME
        # as_bool: from the command line a value is a string, and bool("false") is True
        self.objects, self.save_every = dict(save_objects), int(save_every)
        self.resume = as_bool(resume, "resume")
        self.export_path, self.export_fn = (Path(export_path) if export_path else None), export_fn
        self.epoch_level, self.resume_finished = as_bool(epoch_level, "epoch_level"), as_bool(resume_finished, "resume_finished")
        self._epoch_save_attached, self._saved_iteration, self._save_due = False, -1, False
        # as the file keeps it: plain strings and numbers, a path as the file it names (however it was written)
        self.data = None if data is None else [plain(item) for item in data]
        self.optimiser_settings = None if optimiser_settings is None else plain(dict(optimiser_settings))
        self.seed = None if seed is None else int(seed)
        self.best_model_choice = None if best_model_choice is None else choice_record(best_model_choice)

    def attach(self, engine: Engine) -> None:
        self.objects["trainer"] = engine
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        if self.save_every > 0 and self.epoch_level:
            engine.add_event_handler(Events.STARTED, self._attach_epoch_save)
        elif self.save_every > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_save)
        engine.add_event_handler(Events.COMPLETED, self.save)
        if self.export_path is not None:
            engine.add_event_handler(Events.COMPLETED, self.export)

    def _attach_epoch_save(self, engine: Engine) -> None:
        # registered now, after the handlers attached with the trainer (validation, LR schedule), so it runs after them
        if not self._epoch_save_attached:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_every), self.save)
            self._epoch_save_attached = True

    def _iteration_save(self, engine: Engine) -> None:
        # a save due inside a gradient-accumulation window waits for the window's optimiser step: the checkpoint holds
        # no gradients, so a run resumed from it would step on the later micro-batches alone
        if engine.state.iteration % self.save_every == 0:
            self._save_due = True
        if self._save_due and not getattr(engine, "mid_window", False):
            self._save_due = False
            self.save(engine)

    def save(self, engine: Engine) -> None:
        if self.epoch_level and engine.state.iteration == self._saved_iteration:
            return  # the last epoch's save already holds the completed run
        # every rank's generators (each draws its own dropout and drop-path masks): a collective, so every rank comes
        # here. The default group, not the long-timeout coordination group: DDP keeps the ranks in step, so they reach
        # this save within moments of each other, and the states are a few kB
        pool = getattr(engine, "pool_for_checkpoint", None)
        if callable(pool):  # a collective too: what each rank holds that the checkpoint must record (its failures)
            pool()
        rng = gather_objects([capture_rng_state()])
        if engine.state.rank != 0:
            self._saved_iteration = engine.state.iteration
            return
        ckpt = {name: obj.state_dict() for name, obj in self.objects.items()}
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            ckpt["scaler"] = scaler.state_dict()
        bad = first_non_finite(ckpt)
        if bad is not None:
            raise FloatingPointError(
                f"not saving {self.path} at iteration {engine.state.iteration}: {bad} holds NaN or Inf (the run "
                "diverged); the previous checkpoint is kept: lower the learning rate and train anew"
            )
        ckpt["rng"] = rng
        if self.data is not None:
            ckpt["data"] = self.data
        if self.optimiser_settings is not None:
            ckpt["optimiser_settings"] = self.optimiser_settings
        if self.seed is not None:
            ckpt["seed"] = self.seed
        if self.best_model_choice is not None:
            ckpt["best_model_choice"] = self.best_model_choice
        atomic_torch_save(ckpt, self.path)
        self._saved_iteration = engine.state.iteration
        logger.info("iteration %d: saved %s", engine.state.iteration, self.path)

    def export(self, engine: Engine) -> None:
        """Write ``export_fn()`` to ``export_path`` (rank 0, at the end of a finished run, after its checkpoint)."""
        if engine.state.rank != 0:
            return
        exported = dict(self.export_fn())  # an export with its own "model" (and "info") is saved as is
        exported = exported if isinstance(exported.get("model"), Mapping) else {"model": exported}
        bad = first_non_finite(exported)
        if bad is not None:  # save() refused the same state already; this guards an export_fn of other tensors
            raise FloatingPointError(f"not exporting {self.export_path}: {bad} holds NaN or Inf; the previous file is kept")
        if _same_export(self.export_path, exported):  # a rerun of a finished run: nothing new to write or to keep
            logger.info("exported %s (unchanged: it holds these weights already)", self.export_path)
            return
        # a file there may be another run's or the user's (an output_dir holding downloaded weights): it is kept
        previous = keep_previous(self.export_path)
        atomic_torch_save(exported, self.export_path)
        logger.info("exported %s%s", self.export_path, f" (the previous file kept as {previous})" if previous else "")

    def load(self, engine: Engine) -> None:
        if not self.path.exists():
            return
        try:
            # weights-only: a checkpoint folder may be shared or copied in, and resuming must not run code from it
            ckpt = load_torch_file(self.path, "training checkpoint")
        except ValueError as e:
            raise RuntimeError(f"cannot resume: {e}; or delete it to start over") from None
        # first: another network's checkpoint (another bundle's run in the same output_dir) is refused, even finished
        self._check_networks(ckpt)
        # this package never saves a NaN checkpoint, but one may be copied in: resuming from it would train nothing
        if (bad := first_non_finite(ckpt)) is not None:
            raise RuntimeError(f"cannot resume from {self.path}: tensor {bad} holds NaN or Inf (the run that wrote it "
                               "diverged); delete it to start over")
        saved = ckpt.get("trainer")
        finished_run = not self.resume_finished and finished(saved)
        publishing = finished_run and self._publishes_instead(ckpt, engine)
        if finished_run and not publishing:
            logger.info("%s is the checkpoint of a finished run: training anew", self.path)
            return
        if (other := other_items(ckpt.get("data"), self.data)) is not None:
            # resumed, the rest of the epochs trained on this run's data and the result was published (MONAI Label's
            # next /train after labels were added starts anew too)
            logger.warning("%s was written by a stopped run of %s: training anew, and this run's first checkpoint "
                           "replaces it; to continue that run instead, stop this one and run again with the data it "
                           "was written with", self.path, other)
            return
        saved_length = (saved or {}).get("epoch_length")
        # iteration-level checkpoints too: on another epoch length the saved iteration no longer marks the same place
        # in the data (a resumed pretraining ran its remaining epochs with no iteration and exported), and every
        # schedule that is a function of the step would change mid-run
        if None not in (saved_length, engine.state.epoch_length) and saved_length != engine.state.epoch_length:
            raise RuntimeError(
                f"cannot resume from {self.path}: it was written with {saved_length} iterations per epoch, this run has "
                f"{engine.state.epoch_length} (other data or batch size); delete it to start over, or use another output_dir"
            )
        # a learning-rate scheduler restored with the checkpoint keeps the length of the run that saved it
        keeps_schedule = any(isinstance(o, torch.optim.lr_scheduler.LRScheduler) for o in self.objects.values())
        if (problem := position_problem(self.path, saved, engine.state.max_epochs, keeps_schedule)) is not None:
            raise RuntimeError(problem)
        if (planned := planned_epochs(saved)) not in (None, n := engine.state.max_epochs):
            span = f"schedules computed from the run's length (pretraining's learning rate and momentum) now span {n}"
            if finished(saved):
                logger.info("%s: the finished run of %d epoch(s) goes on to %d; %s, so the rate may rise again",
                            self.path, planned, n, span)
            else:  # where a schedule hangs on the length, not what an uninterrupted run of either length trains
                logger.warning("%s: the stopped run of %d epoch(s) resumes as one of %d; any %s, so they change from "
                               "here on; run with %d epochs to continue it as it was", self.path, planned, n, span,
                               planned)
        for name, obj in self.objects.items():
            if name not in ckpt:
                raise KeyError(f"checkpoint {self.path} has no {name!r} (it has {sorted(ckpt)}); delete it to start over")
            state = ckpt[name]
            if obj is engine:
                # the current run's epoch budget wins, so a finished run can be extended by raising max_epochs
                state = {**state, "max_epochs": engine.state.max_epochs}
            obj.load_state_dict(state)
            if isinstance(obj, torch.optim.Optimizer):
                _lay_state_like_params(obj)
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        restore_rng_state(rank_state(ckpt["rng"], engine.state.rank))
        if publishing:  # no epoch is left to train: the checkpoint holds this run as it is, so it is not written again
            self._saved_iteration = engine.state.iteration
        else:  # a publish instead of training said so in its own line
            logger.info("resumed from %s at iteration %d (epoch %d)", self.path, engine.state.iteration,
                        engine.state.epoch)
        if differ := settings_mismatch(ckpt.get("optimiser_settings"), self.optimiser_settings):
            logger.warning("%s: resumed with the optimiser it holds, so it trains on with %s; delete the checkpoint, "
                           "or choose another output_dir, to train anew with this run's", self.path,
                           differ.replace("(this run:", "(not this run's"))
        if None not in (theirs := ckpt.get("seed"), self.seed) and theirs != self.seed:
            logger.warning("%s was written by a run with seed %d: resumed with seed %d, the rest of its data order and "
                           "augmentations are drawn from that, so the model is no uninterrupted run's of either seed; "
                           "run with --seed %d to continue it as it was", self.path, theirs, self.seed, theirs)

    def _publishes_instead(self, ckpt: Mapping, engine: Engine) -> bool:
        """Whether the finished run ``ckpt`` holds is resumed, with no epoch left, only for its best model to be
        published (see :func:`~unimiss_monai.handlers.publish_best_model.unpublished_best_model`): a kill or a failed
        copy kept it from being published, and this run asks for the same one (:meth:`_other_run`)."""
        savers = [(name, obj) for name, obj in self.objects.items() if isinstance(obj, BestModelSaver) and name in ckpt]
        if len(savers) != 1:
            return False
        name, saver = savers[0]
        # rank 0's reading of the files, and of how this run differs, for every rank: they must all resume, or all
        # train anew (a rank's own look at the pretrained file, a node-local copy of other times, could differ)
        mine = None
        if engine.state.rank == 0:
            verdict = unpublished_best_model(saver, ckpt[name])
            mine = (verdict, self._other_run(ckpt, engine) if verdict is not None and verdict[0] else None)
        verdict, other = broadcast_object(mine)
        if verdict is None:
            return False
        if engine.state.rank == 0 and other is not None:
            # its best model is replaced by this run's first validation: said, with how to publish it instead
            logger.warning("%s: %s, but this run is another, of %s: training anew; to publish that model instead, run "
                           "again as it was", self.path, verdict[1], other)
        elif engine.state.rank == 0:
            (logger.info if verdict[0] else logger.warning)(
                "%s: %s%s", self.path, verdict[1], ": publishing it instead of training anew" if verdict[0] else "")
        return verdict[0] and other is None

    def _other_run(self, ckpt: Mapping, engine: Engine) -> str | None:
        """How this run differs from the finished one ``ckpt`` holds in what it trains (epochs, data, epoch length,
        optimiser settings, seed) or in what chooses its best model (``best_model_choice``), or None: the same run."""
        saved, seed = ckpt.get("trainer") or {}, ckpt.get("seed")
        if (planned := planned_epochs(saved)) != engine.state.max_epochs:
            return f"{engine.state.max_epochs} epochs (that run: {planned})"
        if (other := other_items(ckpt.get("data"), self.data)) is not None:
            return other
        if saved.get("epoch_length") not in (None, engine.state.epoch_length):
            return f"{engine.state.epoch_length} iterations an epoch (that run: {saved['epoch_length']})"
        if differ := settings_mismatch(ckpt.get("optimiser_settings"), self.optimiser_settings):
            return f"other optimiser settings ({differ})"
        if None not in (seed, self.seed) and seed != self.seed:
            return f"seed {self.seed} (that run: {seed})"
        return other_choice(ckpt.get("best_model_choice"), self.best_model_choice)

    def _check_networks(self, ckpt: Mapping) -> None:
        """Refuse, in one line, a checkpoint whose network tensors do not fit this run's networks.

        Another configuration written to the same ``output_dir`` (the smoke overlay's tiny network before the full
        recipe) would otherwise fail deep inside ``load_state_dict`` with a traceback listing every tensor. The file
        is left as it is: it may be the only copy of a run someone still wants.
        """
        for name, obj in self.objects.items():
            saved = ckpt.get(name)
            if not isinstance(obj, torch.nn.Module) or not isinstance(saved, Mapping):
                continue  # not a network, or absent (load names a missing entry itself)
            current = obj.state_dict()
            diff = state_dict_differences(current, saved)
            if not (diff.shape or diff.missing or diff.unexpected):
                continue
            if diff.shape:
                key = diff.shape[0]
                example = (f"{name}.{key} is {list(saved[key].shape)} in the checkpoint, {list(current[key].shape)} "
                           "in this run's network")
            elif diff.missing:
                example = f"{name}.{diff.missing[0]} of this run's network is not in the checkpoint"
            else:
                example = f"{name}.{diff.unexpected[0]} of the checkpoint is not in this run's network"
            count = len(diff.shape) + len(diff.missing) + len(diff.unexpected)
            raise ValueError(
                f"cannot resume from {self.path}: it holds another network than this run builds ({example}; {count} "
                "tensor(s) differ), e.g. the checkpoint of a smoke run before a full one; give this run another "
                "--output_dir, or move that checkpoint out of the way to train anew"
            )


def _same_export(path: Path, exported: Mapping) -> bool:
    """Whether ``path`` holds ``exported`` already: the same keys, equal tensors and equal other values."""
    if not path.is_file():
        return False
    try:
        old = load_torch_file(path, "exported weights")
    except (ValueError, OSError):  # unreadable or unsafe: not ours to judge, so it is kept as the previous file
        return False
    return _equal(old, exported)


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a.cpu(), b.detach().cpu()))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
