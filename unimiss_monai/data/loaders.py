"""Resumable, corruption-tolerant data loading: the sampler, data set, collate function and loaders of pretraining.

Exact resume needs every random choice of the input pipeline to be a function of (seed, epoch, position), not of
process history: :class:`ResumableSampler` draws the sample order from ``(seed, epoch)`` and can start mid-epoch
without loading the skipped samples; each draw carries its own augmentation seed, which :class:`SeededDataset`
applies before transforming. Workers, restarts and DDP ranks then all see the same augmentations for the same draw.
:class:`PhaseLoader` alternates a CT loader and an X-ray loader by epoch or by iteration.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, list_data_collate
from monai.transforms import Compose, Randomizable
from torch.utils.data import Dataset, Sampler

from unimiss_monai.data.image_formats import damaged_file_line
from unimiss_monai.utils.dist import rank_and_world
from unimiss_monai.utils.errors import failed_transform, root_cause
from unimiss_monai.utils.seeds import SEED_MOD, epoch_seed

__all__ = [
    "COUNT_KEY", "SKIPPED_KEY", "PhaseLoader", "ResumableSampler", "SeededDataset", "collate_skipping_corrupt",
    "epoch_length", "make_loader", "pretraining_loader",
]

logger = logging.getLogger(__name__)

#: key of a failed sample's reason (in a data set item) and of the failed samples' list (in a collated batch)
SKIPPED_KEY = "skipped"
#: key of the number of good samples in a collated batch
COUNT_KEY = "num_samples"


def _failure_reason(err: BaseException) -> str:
    """One line saying why a sample failed: the innermost transform MONAI names (its ``applying transform <...>``
    wrapper alone says little) and the first line of the root cause, e.g. ``"LoadImaged: cannot read ..."``."""
    root = root_cause(err)
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    text = lines[0][:300] if lines else type(root).__name__
    name = failed_transform(err)
    return f"{name}: {text}" if name else text


def _damaged_input(err: BaseException, item: Any) -> str | None:
    """The line of :func:`~unimiss_monai.data.image_formats.damaged_file_line` for the first file of ``item`` (a
    data dict) that is damaged (empty, cut short, of another format than its name says), where a loading transform
    failed; None for any other failure."""
    if not (failed_transform(err) or "").startswith("Load") or not isinstance(item, dict):
        return None
    return damaged_file_line(item.values())


class ResumableSampler(Sampler):
    """Yields ``(index, augmentation_seed)`` draws: ``num_samples`` per replica and epoch, shuffled from ``(seed, epoch)``.

    When ``num_samples`` exceeds the data set, permutations are chained (a small X-ray set can fill a long CT epoch).
    Replicas take interleaved draws (``rank::world_size``), like ``DistributedSampler``.

    Args:
        data_len: number of items in the data set (> 0).
        num_samples: draws per replica and epoch; default ``ceil(data_len / world_size)``.
        seed: base seed shared by all replicas.
        shuffle: shuffle the order (the augmentation seeds are random either way).
        rank: this replica's rank. world_size: number of replicas.
    """

    def __init__(self, data_len: int, num_samples: int | None = None, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if data_len <= 0:
            raise ValueError("ResumableSampler: the data set is empty; check the datalist section and its files")
        self.data_len, self.seed, self.shuffle = data_len, int(seed), shuffle
        self.rank, self.world_size = rank, world_size
        self.num_samples = num_samples if num_samples is not None else math.ceil(data_len / world_size)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip its first ``start`` draws of this replica (for a mid-epoch resume)."""
        self.epoch, self.start = int(epoch), int(start)

    def draws(self) -> list[tuple[int, int]]:
        """All ``(index, seed)`` draws of this replica for the current epoch (ignoring ``start``)."""
        # rank 0's seed on every replica: all of them must cut their share from the same order
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        total = self.num_samples * self.world_size
        order: list[int] = []
        while len(order) < total:
            order += torch.randperm(self.data_len, generator=g).tolist() if self.shuffle else list(range(self.data_len))
        seeds = torch.randint(0, SEED_MOD, (total,), generator=g).tolist()
        return list(zip(order[:total], seeds))[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.draws()[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


def _name_of(item: Any, default: str) -> str:
    """What to call a sample in messages: its ``image`` file, else its first path-like value, else ``default``."""
    if isinstance(item, dict):
        if "image" in item and isinstance(item["image"], (str, os.PathLike)):
            return str(item["image"])
        return next((str(v) for v in item.values() if isinstance(v, (str, os.PathLike))), default)
    return str(item) if isinstance(item, (str, os.PathLike)) else default


class SeededDataset(Dataset):
    """A list of data dicts and a MONAI transform, indexed by ``(index, seed)`` draws of :class:`ResumableSampler`.

    A sample that fails to load or transform (corrupt file, wrong dimensionality) is logged as a warning naming the
    file and the failing transform, and returned as ``{"skipped": "<file> (<reason>)"}``;
    :func:`collate_skipping_corrupt` drops it and counts it, so one bad file never stops the run (a phase in which
    every sample fails does: see :class:`~unimiss_monai.engines.pretraining.PretrainingTrainer`).

    Args:
        data: data dicts, e.g. a datalist section.
        transform: MONAI transform(s) producing the views.
        name: what the data set is, for messages (e.g. ``"ct"``).
        cache_dir: optional folder of a disk cache (:class:`~unimiss_monai.data.disk_cache.DiskCacheDataset`) of the
            transforms before the first random one (loading, checks, orientation): with a large archive, later
            epochs read those results back instead of decoding every volume again. ``None`` or ``""``: no cache.
    """

    def __init__(self, data: Sequence[dict], transform: Callable | Sequence[Callable], name: str = "data",
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.data, self.name = list(data), name
        self.transform = transform if isinstance(transform, Compose) else Compose(transform if isinstance(transform, Sequence) else [transform])
        self._cache = None
        if cache_dir:
            from unimiss_monai.data.disk_cache import DiskCacheDataset

            # one sub-folder per data set: the CT and X-ray phases cache different transforms
            self._cache = DiskCacheDataset(self.data, self.transform, Path(cache_dir) / name)
            # what its existing entries warned of, said here once: the data-loading workers, started anew each epoch,
            # do not say it
            self._cache.say_stored()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, draw: tuple[int, int] | int) -> Any:
        index, seed = draw if isinstance(draw, tuple) else (draw, draw)
        item = self.data[index]
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=seed)
        try:
            if self._cache is not None:
                return self._cache.randomised(self._cache.cached(dict(item)))
            return self.transform(dict(item))
        except Exception as e:  # noqa: BLE001 - any failure of one file must not end the run
            # a damaged file has a line of its own that names it, what is wrong and the fix; a reader's words
            # (``Compressed file ended before the end-of-stream marker was reached``) say neither
            text = _damaged_input(e, item) or f"{_name_of(item, f'{self.name}[{index}]')} ({_failure_reason(e)})"
            logger.warning("skipping %s sample %s", self.name, text)
            return {SKIPPED_KEY: text}


def collate_skipping_corrupt(items: list) -> dict:
    """MONAI's ``list_data_collate`` of the good items, with their number under ``"num_samples"``; the failed ones
    are listed under ``"skipped"``. When every item failed: ``{"skipped": [...], "num_samples": 0, "empty": True}``.
    """
    good = [i for i in items if not (isinstance(i, dict) and SKIPPED_KEY in i)]
    skipped = [i[SKIPPED_KEY] for i in items if isinstance(i, dict) and SKIPPED_KEY in i]
    if not good:
        return {SKIPPED_KEY: skipped, COUNT_KEY: 0, "empty": True}
    batch = list_data_collate(good)
    batch[SKIPPED_KEY], batch[COUNT_KEY] = skipped, len(good)
    return batch


def make_loader(
    dataset: SeededDataset,
    batch_size: int,
    num_samples: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    **loader_kwargs,
) -> DataLoader:
    """A MONAI ``DataLoader`` over a :class:`SeededDataset` with a :class:`ResumableSampler` (DDP-aware).

    Args:
        dataset: the views data set. batch_size: per replica.
        num_samples: draws per replica and epoch (default: one pass over the data set).
        seed: base seed. num_workers: loader workers.
    """
    if len(dataset) == 0:
        raise ValueError(f"the {dataset.name!r} datalist is empty; add entries to its section in the datalist JSON or drop the section")
    rank, world = rank_and_world()
    sampler = ResumableSampler(len(dataset), num_samples=num_samples, seed=seed, rank=rank, world_size=world)
    # an own generator: creating the loader iterator must not consume the global RNG that dropout uses
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skipping_corrupt,
        generator=torch.Generator().manual_seed(seed),
        **loader_kwargs,
    )


def epoch_length(data: dict[str, list], batch_size: int, world_size: int = 1) -> int:
    """Iterations per pretraining epoch: one pass over the ``ct`` section of ``data`` (the ``xray`` one without CT),
    split over ``world_size`` replicas; at least 1."""
    items = data.get("ct") or data.get("xray") or []
    return max(1, len(items) // (int(batch_size) * int(world_size)))


def pretraining_loader(
    dataset: SeededDataset, batch_size: int, epoch_length: int, seed: int = 0, num_workers: int = 0
) -> DataLoader | None:
    """:func:`make_loader` drawing ``epoch_length * batch_size`` samples per epoch, or ``None`` for an empty data set
    (a datalist without that section): what the pretraining bundle's ``train#ct_loader`` / ``xray_loader`` are."""
    if len(dataset) == 0:
        return None
    return make_loader(dataset, batch_size, epoch_length * batch_size, seed, num_workers)


class PhaseLoader:
    """The trainer's data: each epoch (or each iteration) draws from the CT loader or the X-ray loader.

    Batches come out as ``(phase, batch)`` with phase ``"ct"`` or ``"xray"``. An epoch has ``epoch_length`` iterations
    whatever its phase (by default one pass of the CT loader, as in UniMiSS+), so the loaders' ``num_samples`` should be
    ``epoch_length * batch_size``.

    Args:
        ct_loader: loader of CT(+DRR) batches, or ``None`` for X-ray-only training.
        xray_loader: loader of X-ray batches, or ``None`` for CT-only training.
        mode: ``"epoch"``: alternate blocks of ``ct_epochs`` CT epochs and ``xray_epochs`` X-ray epochs (the papers);
            ``"iteration"``: alternate ``ct_epochs`` CT iterations and ``xray_epochs`` X-ray iterations inside each epoch.
        ct_epochs: CT block length. xray_epochs: X-ray block length.
        epoch_length: iterations per epoch; default ``len(ct_loader)`` (or ``len(xray_loader)`` without CT).
    """

    def __init__(self, ct_loader=None, xray_loader=None, mode: str = "epoch", ct_epochs: int = 1, xray_epochs: int = 1, epoch_length: int | None = None) -> None:
        if ct_loader is None and xray_loader is None:
            raise ValueError("PhaseLoader needs a CT loader, an X-ray loader or both; the datalist has neither 'ct' nor 'xray' entries")
        if mode not in ("epoch", "iteration"):
            raise ValueError(f"PhaseLoader mode must be 'epoch' or 'iteration', got {mode!r}")
        self.loaders = {"ct": ct_loader, "xray": xray_loader}
        self.mode, self.blocks = mode, {"ct": ct_epochs if ct_loader else 0, "xray": xray_epochs if xray_loader else 0}
        self.epoch_length = epoch_length or len(ct_loader if ct_loader is not None else xray_loader)
        self.epoch, self.start = 1, 0

    def phase_of(self, step: int) -> str:
        """Phase of 0-based epoch (``mode="epoch"``) or iteration-in-epoch (``mode="iteration"``) number ``step``."""
        return "ct" if step % (self.blocks["ct"] + self.blocks["xray"]) < self.blocks["ct"] else "xray"

    def phase_at(self, iteration: int) -> str:
        """Phase of the run's 1-based ``iteration`` (ignite's count over all epochs): the one rule that both draws the
        batches and tells a resumed run's loss curves which phase its earlier points were in."""
        epoch, it = divmod(iteration - 1, self.epoch_length)
        return self.phase_of(it if self.mode == "iteration" else epoch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """1-based ``epoch`` (ignite's count); skip its first ``start`` iterations (mid-epoch resume)."""
        self.epoch, self.start = epoch, start

    def _draws_before(self, phase: str, it: int) -> int:
        return sum(self.phase_of(i) == phase for i in range(it))

    def __len__(self) -> int:
        return self.epoch_length

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        e = self.epoch - 1
        iters = {}
        for phase, loader in self.loaders.items():
            if loader is None:
                continue
            skip = self._draws_before(phase, self.start) if self.mode == "iteration" else (self.start if self.phase_of(e) == phase else 0)
            loader.sampler.set_epoch(e, start=skip * loader.batch_size)
            if self.mode == "iteration" or self.phase_of(e) == phase:
                iters[phase] = iter(loader)
        for it in range(self.start, self.epoch_length):
            phase = self.phase_at(e * self.epoch_length + it + 1)
            yield phase, next(iters[phase])
