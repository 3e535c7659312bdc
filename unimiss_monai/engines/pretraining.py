"""UniMiSS / UniMiSS+ cross-dimensional self-supervised pretraining on a MONAI ``Trainer``.

References:
    - [0]: UniMiSS, Xie et al., ECCV 2022, https://arxiv.org/abs/2112.09356
    - [1]: UniMiSS+, Xie et al., TPAMI 2024, github.com/YtongXie/UniMiSS-code ``UniMiSSPlus/main_UniMissPlus.py``
    - [2]: DINO, Caron et al., 2021, https://arxiv.org/abs/2104.14294
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.engine import Events
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from monai.engines.workflow import Workflow
from monai.utils import convert_to_tensor
from torch import nn

from unimiss_monai.data.loaders import COUNT_KEY, SKIPPED_KEY, PhaseLoader
from unimiss_monai.engines.accumulation import AccumulationWindows
from unimiss_monai.engines.epoch_counts import BY_RANK, EPOCH_KEYS, epoch_counts, saved_epoch_counts, start_epoch_counts
from unimiss_monai.engines.left_out_samples import SamplesLeftOut, log_export, pool_failures, remember_failures
from unimiss_monai.engines.tracking_check import check_tracking_transform
from unimiss_monai.networks.nets.student_teacher import StudentTeacher
from unimiss_monai.utils import schedules
from unimiss_monai.utils.dist import gather_objects, in_process_group
from unimiss_monai.utils.ema import update_momentum

__all__ = ["PretrainingTrainer", "SamplesLeftOut", "log_export"]

logger = logging.getLogger(__name__)
#: what :meth:`PretrainingTrainer.state_dict` adds to ignite's state
_OWN_STATE = ("optimizer_step", "skipped_samples", "failed_samples", "trained_dims", *EPOCH_KEYS, BY_RANK)


class PretrainingTrainer(AccumulationWindows, Trainer):
    """Self-distillation between a student and an EMA teacher over alternating CT and X-ray phases.

    ``recipe="unimiss_plus"`` (default; UniMiSS+ reference ``train_one_epoch3D`` / ``train_one_epoch2D``):

    - **CT phase**, per CT-slab batch: the teacher sees the two CT global crops only; the student sees them, two
      views of the slab's DRR and every ``slice_stride``-th axial slice of each CT crop (as 2D images; their logits
      are averaged per crop). ``loss_function`` is a :class:`~unimiss_monai.losses.UniMissPlusLoss`:
      ``CT->CT + 0.5 DRR->CT + 0.1 slices->CT + 5 MSE(CT recon) + 5 MSE(DRR recon)``.
    - **X-ray phase**: DINO between two X-ray views (teacher on X-ray) ``+ 5 MSE(X-ray recon)``, same loss module.

    ``recipe="unimiss"`` (ECCV 2022): ``loss_function`` is a :class:`~unimiss_monai.losses.CrossDimensionDINOLoss`;
    in the CT phase student and teacher see the CT crops and their axial slices; the X-ray phase is plain DINO.

    In the X-ray phase the student parameters whose name matches ``frozen_3d_pattern`` get no update (their gradient
    is dropped, so AdamW also skips their weight decay). The teacher never gets gradients: it runs under ``no_grad``
    and follows the student by EMA after each optimiser step.

    Batches come from a :class:`~unimiss_monai.data.loaders.PhaseLoader` as ``(phase, batch_dict)``.
    ``engine.state.output`` holds floats: every loss term, ``loss`` (the total), ``teacher_entropy``,
    ``teacher_batch_entropy``, ``center_norm``, ``lr``, and ``phase``/``skipped``.

    Samples that fail to load are skipped and counted (``state.skipped_samples``). At the end of each epoch the
    samples trained per phase are logged and put into ``state.metrics`` (``ct_samples``, ``xray_samples``; per
    process under DDP), and a phase that ran in the epoch but trained on no sample at all stops the run with a
    ``RuntimeError`` naming the phase and its first failure.

    Args:
        device / max_epochs: where to train, and the epochs to run.
        train_data_loader: a ``PhaseLoader``.
        network: the :class:`StudentTeacher`; only its ``student`` is optimised (wrapped in DDP when
            ``torch.distributed`` is initialised).
        optimizer / loss_function / recipe: optimiser over the student's parameters; ``UniMissPlusLoss`` or
            ``CrossDimensionDINOLoss``; ``"unimiss_plus"`` or ``"unimiss"`` (the loss goes with the recipe, see above).
        ct_keys / drr_keys / xray_keys: batch keys of the two CT global crops ``(B, 1, D, H, W)``, the two DRR views
            and the two X-ray views ``(B, 1, H, W)``. An empty ``drr_keys`` trains without DRRs.
        slice_stride: every n-th axial slice of each CT crop becomes a 2D image (UniMiSS+: 2; UniMiSS: 1).
        slice_channels: channels of those 2D images (grey repeated; the 2D stem of MiT/MiT+ takes 3 by default).
        lr_schedule, wd_schedule, momentum_schedule: ``f(optimizer_step) -> value`` for the learning rate (every
            group, times its ``lr_scale`` if any), the weight decay (groups whose weight decay is non-zero) and the
            teacher EMA momentum. ``None`` keeps lr / wd as set and, for the momentum, leaves the teacher fixed. The
            EMA runs after each optimiser step (not each iteration), so it stays right under gradient accumulation.
        teacher_temp_schedule: ``f(epoch, 0-based) -> teacher temperature``. Defaults to 0.04 throughout.
        clip_grad_norm: max gradient norm of the student (0: no clipping).
        frozen_3d_pattern: regex of student parameter names kept fixed in X-ray iterations.
        accumulation_steps: micro-batches per optimiser step. The windows restart with each epoch and the last
            (possibly shorter) one of an epoch steps too, so an epoch takes ``ceil(epoch_length / accumulation_steps)``
            optimiser steps (:meth:`optimizer_steps` gives a run's count, the length its schedules need).
        amp: mixed precision with ``amp_dtype`` ``"bfloat16"`` or ``"float16"`` (fp16 on CUDA adds a ``GradScaler``).
        ddp_kwargs: extra ``DistributedDataParallel`` arguments.
        train_handlers: handlers to attach (checkpoint, stats, TensorBoard, last-layer freeze, ...).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: PhaseLoader,
        network: StudentTeacher,
        optimizer: torch.optim.Optimizer,
        loss_function: nn.Module,
        recipe: str = "unimiss_plus",
        ct_keys: Sequence[str] = ("ct_view0", "ct_view1"),
        drr_keys: Sequence[str] = ("drr_view0", "drr_view1"),
        xray_keys: Sequence[str] = ("xray_view0", "xray_view1"),
        slice_stride: int = 2,
        slice_channels: int = 3,
        lr_schedule: Callable[[int], float] | None = None,
        wd_schedule: Callable[[int], float] | None = None,
        momentum_schedule: Callable[[int], float] | None = None,
        teacher_temp_schedule: Callable[[int], float] | None = None,
        clip_grad_norm: float = 3.0,
        frozen_3d_pattern: str = r"3[dD]",
        accumulation_steps: int = 1,
        amp: bool = False,
        amp_dtype: str = "bfloat16",
        ddp_kwargs: dict | None = None,
        train_handlers: Sequence | None = None,
    ) -> None:
        if recipe not in ("unimiss_plus", "unimiss"):
            raise ValueError(f"recipe must be 'unimiss_plus' or 'unimiss', got {recipe!r}")
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        if amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {amp_dtype!r}")
        if recipe == "unimiss" and slice_stride < 1:
            raise ValueError("the unimiss recipe needs axial slices: slice_stride must be >= 1")
        super().__init__(
            device=device, max_epochs=max_epochs, data_loader=train_data_loader, epoch_length=len(train_data_loader),
            amp=amp, decollate=False,
        )
        self.network, self.optimizer, self.loss_function, self.recipe = network, optimizer, loss_function, recipe
        self.student: nn.Module = network.student
        if in_process_group():
            # 2D and 3D stems are each unused in half of the iterations
            kw = {"find_unused_parameters": True, **(ddp_kwargs or {})}
            if self.state.device.type == "cuda":
                kw.setdefault("device_ids", [self.state.device])
            self.student = nn.parallel.DistributedDataParallel(network.student, **kw)
        self.ct_keys, self.drr_keys, self.xray_keys = list(ct_keys), list(drr_keys), list(xray_keys)
        self.slice_stride, self.slice_channels = slice_stride, slice_channels
        self.lr_schedule, self.wd_schedule = lr_schedule, wd_schedule
        self.momentum_schedule, self.teacher_temp_schedule = momentum_schedule, teacher_temp_schedule
        self.clip_grad_norm, self.accumulation_steps = clip_grad_norm, accumulation_steps
        self.amp_dtype = getattr(torch, amp_dtype)
        self.frozen_3d = [p for n, p in network.student.named_parameters() if re.search(frozen_3d_pattern, n)]
        if not self.frozen_3d and train_data_loader.loaders.get("xray") is not None:
            logger.warning("frozen_3d_pattern %r matches no student parameter: nothing is frozen in X-ray iterations", frozen_3d_pattern)
        self._init_bookkeeping(train_handlers)

    def _init_bookkeeping(self, train_handlers: Sequence | None) -> None:
        """Counters, loader positioning, per-epoch sample checks and the train handlers (shared with the other
        pretraining recipes' trainers)."""
        self.state.optimizer_step, self.state.skipped_samples, self.state.failed_samples = 0, 0, []
        # the count every process agreed on at the last epoch end (or found in the checkpoint it resumed)
        self._skipped_agreed = 0
        self.state.trained_dims = []
        # step rule of the gradients accumulated but not stepped on ("ct" once a CT micro-batch added some; None: none)
        self._pending_phase: str | None = None
        self.state.phase = None
        self._reset_epoch_counts(self)
        self.add_event_handler(Events.EPOCH_STARTED, self._position_loader)
        self.add_event_handler(Events.EPOCH_STARTED, self._reset_epoch_counts)
        # before the train handlers: the counts reach the epoch loggers and the checkpoint (every process's failures,
        # which rank 0 saves), and an all-failed phase stops the run before a checkpoint exports a backbone blind to it
        self.add_event_handler(Events.EPOCH_COMPLETED, self._merge_failures)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._check_epoch_counts)
        if train_handlers is not None:
            for handler in train_handlers:
                check_tracking_transform(handler)
            self._register_handlers(train_handlers)

    def optimizer_steps(self, epochs: int | None = None) -> int:
        """Optimiser steps (the schedules' ``max_steps``) in ``epochs`` (default: all), as the bundle computes them."""
        epochs = self.state.max_epochs if epochs is None else epochs
        return schedules.optimizer_steps(epochs, self.state.epoch_length, self.accumulation_steps)

    def run(self) -> None:  # type: ignore[override]
        # a scaler only where it is needed (fp16 on CUDA); bf16 and fp32 train unscaled
        fp16_cuda = self.amp and self.amp_dtype == torch.float16 and self.state.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if fp16_cuda else None
        Workflow.run(self)

    @staticmethod
    def _position_loader(engine: PretrainingTrainer) -> None:
        # after a mid-epoch resume, start the data where the interrupted run stopped
        engine.data_loader.set_epoch(engine.state.epoch, engine.state.iteration % engine.state.epoch_length)

    @staticmethod
    def _reset_epoch_counts(engine: PretrainingTrainer) -> None:
        # ignite fires EPOCH_STARTED for the epoch a mid-epoch resume continues too: it keeps what the checkpoint held
        if engine.state.epoch_length and engine.state.iteration % engine.state.epoch_length:
            return
        start_epoch_counts(engine.state)

    def phase_dims(self, phase: str) -> set[int]:
        """The spatial dimensions whose tensors a ``phase`` step trains: the CT phase trains 3D, and 2D as well
        when its slices or DRR views go through the 2D branch; the X-ray phase trains 2D."""
        if phase == "xray":
            return {2}
        uses_2d = bool(self.slice_stride) or (self.recipe == "unimiss_plus" and bool(self.drr_keys))
        return {3, 2} if uses_2d else {3}

    def trained_dims(self) -> list[int] | None:
        """The spatial dimensions trained so far, this epoch included (``None``: resumed from a checkpoint that did not
        record them). The export records them so that loading can tell a 3D branch that never saw a CT."""
        if self.state.trained_dims is None:
            return None
        dims = set(self.state.trained_dims)
        for phase, n in self.state.samples_trained.items():
            dims |= self.phase_dims(phase) if n else set()
        return sorted(dims)

    def _publish_trained_dims(self) -> None:
        # the network's export (``export_fn``) reads them; a network that does not record them is left alone
        if hasattr(self.network, "trained_dims"):
            self.network.trained_dims = self.trained_dims()

    @staticmethod
    def _merge_failures(engine: PretrainingTrainer) -> None:
        """Under ``torchrun``, give every process the failed samples and their count of all processes (a
        collective): each then names the whole run's at its end, and the checkpoint rank 0 writes holds them all."""
        engine._skipped_agreed = pool_failures(engine.state, engine._skipped_agreed)

    def pool_for_checkpoint(self) -> None:
        """Called by :class:`~unimiss_monai.handlers.TrainingCheckpoint` on every process before it saves (also
        mid-epoch): the checkpoint rank 0 writes then names the samples every process failed to load so far, and
        holds every process's epoch counts, which each resumes as its own (rank 0's checks no other's samples)."""
        self._merge_failures(self)
        self._counts_by_rank = (self.state.iteration, gather_objects([epoch_counts(self.state)]))

    @staticmethod
    def _check_epoch_counts(engine: PretrainingTrainer) -> None:
        trained = engine.state.samples_trained
        engine.state.trained_dims = engine.trained_dims()
        engine._publish_trained_dims()
        engine.state.metrics |= {"ct_samples": float(trained["ct"]), "xray_samples": float(trained["xray"])}
        logger.info("epoch %d: trained on %d CT and %d X-ray sample(s); %d skipped so far", engine.state.epoch, trained["ct"], trained["xray"], engine.state.skipped_samples)
        for phase, iterations in engine.state.phase_iterations.items():
            if iterations and not trained[phase]:
                first = engine.state.first_failure.get(phase, "none recorded")
                raise RuntimeError(f"the {phase} phase of epoch {engine.state.epoch} trained on no sample (each one failed to load or transform); first failure: {first}")

    def state_dict(self) -> dict:
        """ignite's position, the optimiser steps, samples skipped, dimensions trained and the epoch's counts."""
        # every process's counts where gathered for this very save (pool_for_checkpoint); else this process's alone
        at, by_rank = getattr(self, "_counts_by_rank", (None, []))
        return super().state_dict() | {
            "optimizer_step": self.state.optimizer_step, "skipped_samples": self.state.skipped_samples,
            "failed_samples": list(self.state.failed_samples), "trained_dims": self.trained_dims(),
        } | epoch_counts(self.state) | ({BY_RANK: by_rank} if at == self.state.iteration and len(by_rank) > 1 else {})

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict({k: v for k, v in state_dict.items() if k not in _OWN_STATE})
        self.state.optimizer_step = int(state_dict.get("optimizer_step", 0))
        self.state.skipped_samples = int(state_dict.get("skipped_samples", 0))
        self.state.failed_samples = list(state_dict.get("failed_samples", []))
        self._skipped_agreed = self.state.skipped_samples
        # a checkpoint written before the dimensions were recorded leaves them unknown: the export then records none
        self.state.trained_dims = state_dict.get("trained_dims")
        for key, value in saved_epoch_counts(state_dict, getattr(self.state, "rank", 0)).items():
            setattr(self.state, key, value)
        self._publish_trained_dims()

    # ---- inputs -----------------------------------------------------------------------------------------------------
    def _views(self, batch: dict, keys: list[str], phase: str) -> list[torch.Tensor]:
        if missing := [k for k in keys if k not in batch]:
            have = sorted(k for k in batch if k not in (SKIPPED_KEY, COUNT_KEY))
            raise KeyError(f"{phase} batch has no {missing} (it has {have}); check the {phase} view transforms' output keys or the trainer's {phase}_keys")
        # plain tensors: slicing a batch of MetaTensors through the networks would drag per-sample metadata along
        return [convert_to_tensor(batch[k], track_meta=False).to(self.state.device, non_blocking=self.non_blocking) for k in keys]

    def _slices(self, crop: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D, H, W)`` -> every ``slice_stride``-th axial slice as ``(B * S, slice_channels, H, W)``, sample-major."""
        s = crop[:, :1, :: self.slice_stride].transpose(1, 2).reshape(-1, 1, *crop.shape[-2:])
        return s.expand(-1, self.slice_channels, -1, -1)

    # ---- losses -----------------------------------------------------------------------------------------------------
    def _ct_terms(self, batch: dict, temp: float) -> dict[str, torch.Tensor]:
        ct = self._views(batch, self.ct_keys, "ct")
        n_ct = sum(v.shape[0] for v in ct)
        slices = [self._slices(v) for v in ct] if self.slice_stride else []
        n_slices = slices[0].shape[0] // ct[0].shape[0] if slices else 0
        if self.recipe == "unimiss":
            with torch.no_grad():
                t = self.network.teacher(ct + slices).logits.float()
            s = self.student(ct + slices).logits.float()
            per_volume = lambda x: x[n_ct:].view(n_ct, n_slices, -1)  # noqa: E731
            return dict(self.loss_function(s[:n_ct], t[:n_ct], per_volume(s), per_volume(t), temp))
        with torch.no_grad():
            teacher = self.network.teacher(ct).logits.float()
        drr = self._views(batch, self.drr_keys, "drr") if self.drr_keys else []
        # one student call (one DDP forward) for everything; inside, one backbone pass per resolution, so the DRR
        # views and the slices share a 2D pass when their sizes match
        out = self.student(ct + drr + slices)
        logits = out.logits.float()
        n_drr = sum(v.shape[0] for v in drr)
        outputs = {"student": logits[:n_ct], "teacher": teacher}
        rec_ct, rec_drr = out.reconstructions[: len(ct)], out.reconstructions[len(ct) : len(ct) + len(drr)]
        if rec_ct[0] is not None:
            outputs |= {"reconstruction": torch.cat(rec_ct).float(), "image": torch.cat(ct).float()}
        if drr:
            outputs["student_drr"] = logits[n_ct : n_ct + n_drr]
            if rec_drr[0] is not None:
                outputs |= {"reconstruction_drr": torch.cat(rec_drr).float(), "image_drr": torch.cat(drr).float()}
        if slices:
            outputs["student_slices"] = logits[n_ct + n_drr :].view(n_ct, n_slices, -1)
        return dict(self.loss_function(outputs, temp))

    def _xray_terms(self, batch: dict, temp: float) -> dict[str, torch.Tensor]:
        views = self._views(batch, self.xray_keys, "xray")
        with torch.no_grad():
            teacher = self.network.teacher(views).logits.float()
        out = self.student(views)
        if self.recipe == "unimiss":
            loss = self.loss_function.dino(out.logits.float(), teacher, temp)
            return {"distill": loss, "total": loss}
        outputs = {"student": out.logits.float(), "teacher": teacher}
        if out.reconstructions[0] is not None:
            outputs |= {"reconstruction": torch.cat(out.reconstructions).float(), "image": torch.cat(views).float()}
        return dict(self.loss_function(outputs, temp))

    # ---- one iteration ----------------------------------------------------------------------------------------------
    def _apply_schedules(self) -> None:
        for group in self.optimizer.param_groups:
            if self.lr_schedule is not None:
                group["lr"] = self.lr_schedule(self.state.optimizer_step) * group.get("lr_scale", 1.0)
            if self.wd_schedule is not None and group.get("weight_decay", 0.0) != 0.0:
                group["weight_decay"] = self.wd_schedule(self.state.optimizer_step)

    @staticmethod
    def _count_phase(engine: PretrainingTrainer, phase: str, batch: dict) -> list:
        """Book the iteration to its phase and count the samples its loader had to skip; returns their names."""
        engine.state.phase = phase
        skipped = batch.get(SKIPPED_KEY, [])
        engine.state.phase_iterations[phase] += 1
        if skipped:
            engine.state.skipped_samples += len(skipped)
            engine.state.first_failure.setdefault(phase, skipped[0])
            remember_failures(engine.state.failed_samples, skipped)
            logger.warning("iteration %d: skipped %d unreadable sample(s), %d so far: %s", engine.state.iteration, len(skipped), engine.state.skipped_samples, skipped)
        return skipped

    @staticmethod
    def _backward_and_step(engine: PretrainingTrainer, loss: torch.Tensor, phase: str, batch: dict, due: bool) -> None:
        """Backward of ``loss`` (scaled for accumulation and AMP), the optimiser step when ``due`` (end of an
        accumulation window or of the epoch), and the count of samples trained in ``phase``."""
        scaled = loss / engine.accumulation_steps
        (engine.scaler.scale(scaled) if engine.scaler is not None else scaled).backward()
        # a window holding a CT micro-batch steps with the CT rule: the X-ray rule would drop its 3D gradients
        engine._pending_phase = "ct" if "ct" in (phase, engine._pending_phase) else phase
        # handlers such as LastLayerFreezeHandler drop gradients here, before the step
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if due:
            engine._optimizer_step(engine._pending_phase)
            engine._pending_phase = None
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        first_key = (engine.ct_keys if phase == "ct" else engine.xray_keys)[0]
        engine.state.samples_trained[phase] += int(batch.get(COUNT_KEY, len(batch[first_key])))

    def _iteration(self, engine: PretrainingTrainer, batchdata: tuple[str, dict]) -> dict[str, Any]:
        phase, batch = batchdata
        skipped = self._count_phase(engine, phase, batch)
        due = engine._start_window(engine)  # before the return below: an empty first micro-batch still opens its window
        if engine._passed_over(engine, batch, due):
            return {"phase": phase, "skipped": len(skipped)}
        temp = engine.teacher_temp_schedule(engine.state.epoch - 1) if engine.teacher_temp_schedule else 0.04
        engine.network.train()
        with torch.autocast(engine.state.device.type, dtype=engine.amp_dtype, enabled=engine.amp):
            terms = engine._ct_terms(batch, temp) if phase == "ct" else engine._xray_terms(batch, temp)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if not math.isfinite((loss := terms["total"]).item()):
            values = {k: round(float(v), 4) for k, v in terms.items()}
            raise FloatingPointError(f"pretraining loss is {loss.item()} at iteration {engine.state.iteration} ({phase} phase, terms {values}); lower the learning rate or use bf16 instead of fp16")
        self._backward_and_step(engine, loss, phase, batch, due)
        out: dict[str, Any] = {k: float(v.detach()) for k, v in terms.items()} | {"loss": float(loss.detach())}
        out |= getattr(getattr(engine.loss_function, "dino", None), "diagnostics", {})
        out |= {"lr": engine.optimizer.param_groups[0]["lr"], "phase": phase, "skipped": len(skipped)}
        return out

    def _optimizer_step(self, phase: str) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if phase == "xray":
            for p in self.frozen_3d:
                p.grad = None
        if self.clip_grad_norm:
            grads = [p for p in self.network.student.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(grads, self.clip_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.momentum_schedule is not None:
            update_momentum(self.network.student, self.network.teacher, self.momentum_schedule(self.state.optimizer_step))
        self.state.optimizer_step += 1
