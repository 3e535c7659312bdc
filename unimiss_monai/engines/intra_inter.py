"""Intra-inter contrastive clustering pretraining on the pretraining bundle's engine.

- [0]: Nguyen et al., "Joint Self-Supervised Image-Volume Representation Learning with Intra-Inter Contrastive
  Clustering", AAAI 2023, https://arxiv.org/abs/2212.01893
- [1]: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments" (SwAV,
  DeepCluster-v2), NeurIPS 2020, https://arxiv.org/abs/2006.09882
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from ignite.engine import Events
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from torch import nn

from unimiss_monai.data.loaders import COUNT_KEY, PhaseLoader
from unimiss_monai.engines.pretraining import PretrainingTrainer
from unimiss_monai.losses.deepcluster_v2 import DeepClusterV2Loss
from unimiss_monai.losses.masked_embedding import random_token_mask
from unimiss_monai.networks.nets.clustering_head import ClusteringHead
from unimiss_monai.networks.nets.image_volume import ImageVolumeNet
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.dist import in_process_group
from unimiss_monai.utils.seeds import epoch_seed

__all__ = ["STAGE_NAMES", "TERMS", "IntraInterTrainer"]

logger = logging.getLogger(__name__)

TERMS = ("intra", "inter", "masked")
#: stage numbers as logged: 0 joint schedule, 1-3 the stages of the staged schedule
STAGE_NAMES = {0: "joint", 1: "2d", 2: "masked embedding", 3: "joint 3d"}


def staged_epochs(epochs: int, fractions: tuple[float, float] = (0.4, 0.1)) -> list[int]:
    """The default staged schedule: 40 % of ``epochs`` 2D, 10 % masked embedding, the rest joint 3D."""
    first, second = (int(epochs * f) for f in fractions)
    return [first, second, epochs - first - second]


class IntraInterTrainer(PretrainingTrainer):
    """One network (:class:`ImageVolumeNet`) and two :class:`ClusteringHead` s trained with clustering objectives over
    the bundle's alternating CT and X-ray phases ([0]); no teacher.

    Terms: ``intra`` (SwAV or DeepCluster-v2 between two views of an X-ray, or of one CT slice: both CT views share
    their slices, only the in-plane augmentation differs), ``inter`` (the same objective between the volume
    embeddings of two views of a CT) and ``masked`` (about ``mask_ratio`` of the real slice embeddings of view 0
    replaced by the mask token, MSE of the predicted embeddings there).

    ``schedule="joint"``: every term from the first epoch, weighted by ``loss_weights``. ``schedule="staged"``
    (``stage_epochs = [E1, E2, E3]``, summing to ``max_epochs``): stage 1 trains ``intra`` only (X-rays and single
    slices), stage 2 ``masked`` (plus ``intra`` when its weight is > 0) with the slice encoder frozen when
    ``freeze_slice_encoder_in_stage2``, stage 3 all terms. The stage is a function of the epoch, so a resumed run is
    in the right one. X-ray batches of stage 2 train ``intra`` only when the slice encoder is not frozen; otherwise
    they are passed over (no optimiser step of their own).

    CT batches hold two views ``(B, 1, L, X, Y)`` (``ct_keys``, network order, trailing slices padded) and the real
    slice count of each volume under ``slices_key`` ``(B,)``; without it every slice is real. A count of 0 or above
    ``L`` is refused. DeepCluster-v2 losses also need the dataset index of every sample under ``index_key`` (CT:
    the volume index ``v``, whose slice ``z`` is sample ``v * L + z`` of the intra bank; X-ray: its own index in the
    intra bank, after the slices). Their memory bank is filled by one pass over the data when the run starts with
    an empty bank, and clustered at the start of every epoch.

    Under ``torch.distributed`` the gradients are averaged over the ranks after ``backward`` (the terms differ per
    phase, so which parameters get a gradient changes between iterations, identically on every rank) and the
    network's and heads' buffers (batch-norm statistics) follow rank 0 after each step, as DDP's defaults do.

    ``engine.state.output``: ``loss``, each computed term, ``intra_entropy`` / ``inter_entropy`` (entropy of the
    batch-mean prototype prediction over ``log K``: near 0 means every sample predicts one prototype, a collapse),
    ``lr``, ``stage``, ``phase``, ``skipped``.

    Args:
        device, max_epochs, train_data_loader, optimizer, lr_schedule, wd_schedule, clip_grad_norm,
            accumulation_steps, amp, amp_dtype, train_handlers: as :class:`PretrainingTrainer`.
        network: the :class:`ImageVolumeNet`.
        intra_head / inter_head: :class:`ClusteringHead` of the slice / image and of the volume embeddings.
        intra_loss / inter_loss: :class:`~unimiss_monai.losses.SwAVLoss` or
            :class:`~unimiss_monai.losses.DeepClusterV2Loss` (its prototypes are then the k-means centroids and get
            no gradient).
        masked_loss: :class:`~unimiss_monai.losses.MaskedEmbeddingLoss`.
        schedule: ``"staged"`` or ``"joint"``.
        stage_epochs: ``[E1, E2, E3]`` of the staged schedule.
        loss_weights: weight of ``intra``, ``inter``, ``masked`` (>= 0, one > 0). Defaults to 1 each.
        mask_ratio: fraction of real slices masked. Defaults to 0.1.
        epoch_queue_starts: first (0-based) epoch in which the SwAV losses use their queue.
        freeze_slice_encoder_in_stage2: no gradient into the slice encoder in stage 2.
        max_intra_slices: at most this many slice pairs per CT batch in the intra term (0: all).
        ct_keys / xray_keys / slices_key / index_key: batch keys, see above.
        seed: seed of the k-means initialisations.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: PhaseLoader,
        network: ImageVolumeNet,
        intra_head: ClusteringHead,
        inter_head: ClusteringHead,
        optimizer: torch.optim.Optimizer,
        intra_loss: nn.Module,
        inter_loss: nn.Module,
        masked_loss: nn.Module,
        schedule: str = "staged",
        stage_epochs: Sequence[int] | None = None,
        loss_weights: Mapping[str, float] | None = None,
        mask_ratio: float = 0.1,
        epoch_queue_starts: int = 0,
        freeze_slice_encoder_in_stage2: bool = True,
        max_intra_slices: int = 0,
        ct_keys: Sequence[str] = ("image_view0", "image_view1"),
        xray_keys: Sequence[str] = ("image_view0", "image_view1"),
        slices_key: str = "num_slices",
        index_key: str = "index",
        lr_schedule: Callable[[int], float] | None = None,
        wd_schedule: Callable[[int], float] | None = None,
        clip_grad_norm: float = 3.0,
        accumulation_steps: int = 1,
        amp: bool = False,
        amp_dtype: str = "bfloat16",
        seed: int = 0,
        train_handlers: Sequence | None = None,
    ) -> None:
        if schedule not in ("staged", "joint"):
            raise ValueError(f"IntraInterTrainer: schedule must be 'staged' or 'joint', got {schedule!r}")
        weights = {"intra": 1.0, "inter": 1.0, "masked": 1.0, **dict(loss_weights or {})}
        if set(weights) - set(TERMS) or min(weights.values()) < 0 or max(weights.values()) <= 0:
            raise ValueError(f"IntraInterTrainer: loss_weights must give {list(TERMS)} values >= 0, one > 0; got {dict(loss_weights or {})}")
        stages = [int(e) for e in (stage_epochs if stage_epochs is not None else (0, 0, max_epochs))]
        if schedule == "staged":
            if len(stages) != 3 or min(stages) < 0 or sum(stages) != max_epochs:
                raise ValueError(f"IntraInterTrainer: stage_epochs {list(stages)} must be 3 numbers >= 0 summing to train#epochs={max_epochs} (2D, masked embedding, joint 3D)")
            needs = {0: ("intra",), 1: ("masked",), 2: TERMS}
            for i, e in enumerate(stages):
                if e and not any(weights[t] > 0 for t in needs[i]):
                    raise ValueError(f"IntraInterTrainer: stage {i + 1} ({STAGE_NAMES[i + 1]}, {e} epochs) trains {list(needs[i])}, whose loss_weights are all 0")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"IntraInterTrainer: mask_ratio must be in (0, 1), got {mask_ratio}")
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        if amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {amp_dtype!r}")
        Trainer.__init__(
            self, device=device, max_epochs=max_epochs, data_loader=train_data_loader,
            epoch_length=len(train_data_loader), amp=amp, decollate=False,
        )
        self.network, self.optimizer, self.recipe = network, optimizer, "intra_inter"
        self.student = network
        self.heads = {"intra": intra_head, "inter": inter_head}
        self.losses = {"intra": intra_loss, "inter": inter_loss, "masked": masked_loss}
        self.loss_function = nn.ModuleDict(self.losses)
        self.schedule, self.loss_weights, self.stage_bounds = schedule, weights, list(itertools.accumulate(stages))
        self.mask_ratio, self.epoch_queue_starts = float(mask_ratio), int(epoch_queue_starts)
        # as_bool: from the command line the value is a string, and bool("false") is True
        self.freeze_stage2 = as_bool(freeze_slice_encoder_in_stage2, "freeze_slice_encoder_in_stage2")
        self.max_intra_slices, self.seed = int(max_intra_slices), int(seed)
        self.ct_keys, self.xray_keys, self.drr_keys = list(ct_keys), list(xray_keys), []
        self.slices_key, self.index_key = slices_key, index_key
        self.lr_schedule, self.wd_schedule = lr_schedule, wd_schedule
        self.clip_grad_norm, self.accumulation_steps = clip_grad_norm, accumulation_steps
        self.amp_dtype = getattr(torch, amp_dtype)
        self._trained = [network, intra_head, inter_head]
        self._params = list({id(p): p for m in self._trained for p in m.parameters()}.values())
        if in_process_group():
            # what DDP does at construction: every rank starts from rank 0's weights
            for t in itertools.chain(*(m.state_dict().values() for m in self._trained)):
                dist.broadcast(t, src=0)
        self._init_bookkeeping(train_handlers)
        # after the train handlers: a resumed run has its memory bank back before deciding to fill one
        self.add_event_handler(Events.STARTED, self._fill_memory_if_empty)
        self.add_event_handler(Events.EPOCH_STARTED, self._cluster_memory)

    # ---- schedule ---------------------------------------------------------------------------------------------------
    def phase_dims(self, phase: str) -> set[int]:
        """Both phases train 2D tensors: the slice encoder sees X-rays and the slices of each CT."""
        return {2}

    def stage(self, epoch: int) -> int:
        """Stage of 0-based ``epoch``: 0 for the joint schedule, else 1 (2D), 2 (masked embedding), 3 (joint 3D)."""
        if self.schedule == "joint":
            return 0
        return min(bisect.bisect_right(self.stage_bounds, epoch), 2) + 1

    def active_terms(self, stage: int, phase: str) -> dict[str, float]:
        """``{term: weight}`` trained in ``stage`` on a ``phase`` batch (terms of weight 0 left out)."""
        if phase == "xray":
            names = () if stage == 2 and self.freeze_stage2 else ("intra",)
        else:
            names = {0: TERMS, 1: ("intra",), 2: ("intra", "masked"), 3: TERMS}[stage]
        return {t: self.loss_weights[t] for t in names if self.loss_weights[t] > 0}

    # ---- DeepCluster-v2 bank ----------------------------------------------------------------------------------------
    def _deepcluster(self) -> dict[str, DeepClusterV2Loss]:
        return {k: v for k, v in self.losses.items() if isinstance(v, DeepClusterV2Loss)}

    def _fill_memory_if_empty(self, engine: IntraInterTrainer) -> None:
        losses = self._deepcluster()
        if not losses or any(bool(v.memory_filled.any()) for v in losses.values()):
            return
        logger.info("filling the DeepCluster-v2 memory bank with one pass over the data")
        modes = [m.training for m in self._trained]
        for m in self._trained:
            m.eval()
        with torch.no_grad():
            for phase, loader in self.data_loader.loaders.items():
                if loader is None:
                    continue
                loader.sampler.set_epoch(0, 0)
                for batch in loader:
                    if not batch.get("empty"):
                        terms = ("intra", "inter") if phase == "ct" else ("intra",)
                        self._embed(phase, batch, {t: 1.0 for t in terms if t in losses}, stage=0, memory_only=True)
        for m, mode in zip(self._trained, modes):
            m.train(mode)

    def _cluster_memory(self, engine: IntraInterTrainer) -> None:
        # k-means at the start of a fresh epoch only: a run resumed mid-epoch keeps the assignments it saved
        if engine.state.iteration % engine.state.epoch_length:
            return
        for name, loss in self._deepcluster().items():
            g = torch.Generator().manual_seed(epoch_seed(self.seed, engine.state.epoch))
            loss.cluster_memory(self.heads[name].prototype_weights, generator=g)

    # ---- terms ------------------------------------------------------------------------------------------------------
    def _padding(self, batch: dict, views: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` bool, True at padded slices, from the real slice counts ``batch[slices_key]``."""
        b, length = views.shape[0], views.shape[2]
        if self.slices_key not in batch:
            return torch.zeros(b, length, dtype=torch.bool, device=views.device)
        counts = torch.as_tensor(batch[self.slices_key]).reshape(-1).to(views.device).long()
        if counts.shape[0] != b or int(counts.min()) < 1 or int(counts.max()) > length:
            raise ValueError(f"CT batch '{self.slices_key}' {counts.tolist()} must give 1..{length} real slices for each of the {b} volumes; drop empty volumes, crop to the sequence length")
        return torch.arange(length, device=views.device)[None] >= counts[:, None]

    def _cluster(self, name: str, z: torch.Tensor, indices: torch.Tensor | None, memory_only: bool) -> torch.Tensor | None:
        """Clustering loss of ``z`` ``(2N, D)`` (two views, view-major) with the ``name`` head's prototypes."""
        loss, head = self.losses[name], self.heads[name]
        if isinstance(loss, DeepClusterV2Loss):
            if indices is None:
                raise KeyError(f"DeepCluster-v2 needs the sample index '{self.index_key}' in every batch; give each datalist entry an integer '{self.index_key}'")
            out = None if memory_only else loss(z, head.prototype_weights, indices, n_views=2)
            loss.update_memory(z, indices, n_views=2)
            return out
        if memory_only:
            return None
        return loss(z, head.prototype_weights[0], n_views=2, use_queue=self.state.epoch - 1 >= self.epoch_queue_starts)

    def _entropy(self, name: str, z: torch.Tensor) -> float:
        weight = self.heads[name].prototype_weights[0].detach().float()
        p = F.softmax(z.detach().float() @ weight.t() / 0.1, dim=1).mean(dim=0)
        return float(-(p * p.clamp_min(1e-12).log()).sum() / math.log(weight.shape[0])) if weight.shape[0] > 1 else 0.0

    def _embed(self, phase: str, batch: dict, terms: Mapping[str, float], stage: int, memory_only: bool = False) -> tuple[dict, dict]:
        """Loss terms and diagnostics of one batch (with ``memory_only``: only the DeepCluster-v2 bank update)."""
        net, out, diag = self.network, {}, {}
        index = batch.get(self.index_key)
        index = None if index is None else torch.as_tensor(index).reshape(-1).to(self.state.device).long()
        if phase == "xray":
            views = self._views(batch, self.xray_keys, "xray")
            z = self.heads["intra"](net.encode_images(torch.cat(views)))  # (2B, D)
            idx = None if index is None else index
            out["intra"], diag["intra_entropy"] = self._cluster("intra", z, idx, memory_only), self._entropy("intra", z)
            return out, diag
        views = self._views(batch, self.ct_keys, "ct")  # 2 x (B, 1, L, X, Y)
        pad = self._padding(batch, views[0])
        b, length = pad.shape
        frozen = stage == 2 and self.freeze_stage2
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            emb, _ = net.encode_slices(torch.cat(views), pad.repeat(2, 1))  # (2B, L, d); one pass, one BN batch
        if "intra" in terms:
            real = ~pad
            pairs = [emb[:b][real], emb[b:][real]]  # (M, d) each: slice z of view 0 and of view 1
            idx = None if index is None else (index[:, None] * length + torch.arange(length, device=pad.device))[real]
            if self.max_intra_slices and pairs[0].shape[0] > self.max_intra_slices:
                keep = torch.randperm(pairs[0].shape[0])[: self.max_intra_slices].to(pad.device)
                pairs, idx = [p[keep] for p in pairs], (None if idx is None else idx[keep])
            z = self.heads["intra"](torch.cat(pairs))
            out["intra"], diag["intra_entropy"] = self._cluster("intra", z, idx, memory_only), self._entropy("intra", z)
        if "inter" in terms:
            _, volume = net.inter(emb, pad.repeat(2, 1))  # (2B, d)
            z = self.heads["inter"](volume)
            out["inter"], diag["inter_entropy"] = self._cluster("inter", z, index, memory_only), self._entropy("inter", z)
        if "masked" in terms and not memory_only:
            mask = random_token_mask(pad, self.mask_ratio)
            tokens, _ = net.inter(emb[:b], pad, token_mask=mask)
            out["masked"] = self.losses["masked"](net.predictor(tokens), emb[:b], mask)
        return out, diag

    # ---- one iteration ----------------------------------------------------------------------------------------------
    def _iteration(self, engine: IntraInterTrainer, batchdata: tuple[str, dict]) -> dict[str, Any]:
        phase, batch = batchdata
        skipped = self._count_phase(engine, phase, batch)
        stage = engine.stage(engine.state.epoch - 1)
        terms = engine.active_terms(stage, phase)
        base = {"phase": phase, "stage": float(stage), "skipped": len(skipped)}
        # windows restart with each epoch; an iteration that trains nothing still opens (zero_grad) and closes its
        # window (steps on the gradients pending from earlier micro-batches), see engines.accumulation
        due = engine._start_window(engine)
        if engine._passed_over(engine, batch, due):
            return base
        if not terms:
            # nothing of this phase trains in this stage; the samples still count as seen
            engine.state.samples_trained[phase] += int(batch.get(COUNT_KEY, 0))
            engine._close_window_without_batch(engine, due)
            return base
        for name in ("intra", "inter"):
            # only the heads this step uses: a head of an inactive term stays exactly as it is
            if name in terms and not isinstance(engine.losses[name], DeepClusterV2Loss):
                engine.heads[name].normalize_prototypes()
        for m in engine._trained:
            m.train()
        with torch.autocast(engine.state.device.type, dtype=engine.amp_dtype, enabled=engine.amp):
            values, diag = engine._embed(phase, batch, terms, stage)
        loss = sum(terms[k] * values[k].float() for k in values)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if not math.isfinite(loss.item()):
            shown = {k: round(float(v), 4) for k, v in values.items()}
            raise FloatingPointError(f"pretraining loss is {loss.item()} at iteration {engine.state.iteration} ({phase} phase, stage {stage}, terms {shown}); lower the learning rate or use bf16 instead of fp16")
        self._backward_and_step(engine, loss, phase, batch, due)
        out: dict[str, Any] = {k: float(v.detach()) for k, v in values.items()} | diag
        return out | base | {"loss": float(loss.detach()), "lr": engine.optimizer.param_groups[0]["lr"]}

    def _optimizer_step(self, phase: str) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        for name, head in self.heads.items():
            if isinstance(self.losses[name], DeepClusterV2Loss):
                for p in head.prototypes.parameters():
                    p.grad = None  # the k-means centroids, not optimised
            else:
                head.cancel_prototype_gradients(self.state.optimizer_step)
        if in_process_group():
            world = dist.get_world_size()
            for p in self._params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(world)
        if self.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in self._params if p.grad is not None], self.clip_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if in_process_group():
            for m in self._trained:
                for buf in m.buffers():
                    dist.broadcast(buf, src=0)
        self.state.optimizer_step += 1
