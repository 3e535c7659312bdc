"""A disk cache of the deterministic part of preprocessing, for datalists larger than memory.

MONAI's ``PersistentDataset`` runs a ``Compose`` up to its first random transform once per item, saves the result
under ``cache_dir`` and afterwards reads it back, so an epoch over a CT archive does not decode every volume again.
:class:`DiskCacheDataset` keeps that mechanism and changes three things a long-lived, shared cache needs:

- an existing ``cache_dir`` is kept: ``PersistentDataset`` of MONAI 1.6 empties it at construction and in ``set_data``,
  which would throw away the previous run's cache and delete whatever a user kept in a folder they named;
- an item's key includes the size and modification time of every file it names, so a file replaced in place is decoded
  again instead of served stale;
- the key includes the cached transforms with their settings (a hash of them pickled; MONAI's default ``json_hashing``
  cannot serialise transforms and falls back to their class names, so a changed setting such as a new spacing would
  reuse the old entries), so changing the preprocessing starts a new set of entries;
- a ``MetaTensor`` keeps its affine and other plain metadata through the cache (:func:`storable`): MONAI stores it as a
  bare tensor (``track_meta=False``), since its metadata holds numpy values that ``torch.load(weights_only=True)``
  refuses, so a random transform after the cached part (a reorientation in a nested ``Compose``, an on-the-fly DRR) met
  an identity affine on every read from the cache and the same one with its real affine on the first;
- what the cached part warns of (a chest film that looks like a negative, a CT not in HU, a label of both sides) is said
  by every run that uses the entry: the WARNING-and-above records of the package's loggers in the computing thread
  (:func:`~unimiss_monai.utils.logged_warnings.warnings_logged`) go to a small file beside the entry
  (:mod:`~unimiss_monai.data.cache_warnings`; the entry itself is as before, for older versions sharing the cache), and
  the main process says them again, once per message (:func:`~unimiss_monai.utils.logged_warnings.say_again`): in the
  up-front check of the items (:meth:`DiskCacheDataset.fill`, :meth:`DiskCacheDataset.say_stored`) or at a hit, never in
  a data-loading worker (started anew each epoch). Entries of earlier versions hold no warnings and are read in silence.

Entries are written and read by :meth:`DiskCacheDataset._cachecheck` rather than MONAI's: MONAI writes an entry in a
folder under ``$TMPDIR`` and ``shutil.move``s it into ``cache_dir``, which across file systems (a node's local ``/tmp``,
a shared cache on NFS) byte-copies straight into the final name. A run killed mid-copy then leaves a truncated entry on
which MONAI raises (it recomputes only unpickling errors), and another rank may read an entry while it is being copied.
Here an entry is written to a temporary file in ``cache_dir`` itself and renamed with ``os.replace`` (atomic within one
file system), so the final name only ever holds a whole entry; an entry that cannot be read back
(``torch.load(weights_only=True)``), e.g. one truncated by an older version, is a cache miss: the item is computed again
and its entry replaced, with one warning naming the file. The temporary file a killed writer leaves is removed the next
time a process opens the folder, once it is :data:`LEFTOVER_AGE_S` old.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Sequence
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, MetaTensor, PersistentDataset
from monai.data.utils import SUPPORTED_PICKLE_MOD, pickle_hashing
from monai.utils import convert_to_tensor, look_up_option
from torch.utils.data import get_worker_info

from unimiss_monai.data.cache_warnings import store_warnings, stored_warnings
from unimiss_monai.data.split_check import deterministic_head, shared_failures
from unimiss_monai.data.tolerant import DatalistSplit, failed_case, refuse_failures
from unimiss_monai.data.writers import remove_stale_temporaries, temporary_beside
from unimiss_monai.utils.logged_warnings import SAID_AGAIN, kept_apart, say_again, warnings_logged
from unimiss_monai.utils.once import sent_with_said

__all__ = ["CACHE_MODES", "ENTRY_FORMAT", "LEFTOVER_AGE_S", "CheckedCacheDataset", "DiskCacheDataset", "cached_dataset",
           "item_hash", "restored", "storable", "transforms_hash"]

logger = logging.getLogger(__name__)

#: the ``cache`` choices of :func:`cached_dataset`
CACHE_MODES = ("memory", "disk", "none")

#: version of the entries' content, part of every key: entries of version 1 held bare tensors without their affine,
#: and must not be read as if they had one. An entry also stands for the input checks its item passed (a training run
#: does not check an item whose entry exists), so checks made stricter bump it too: version 3 refuses CTs of raw
#: scanner values (HU + 1024) and of sign-flipped HU, which version 2 entries hold
ENTRY_FORMAT = 3
#: the key under which :func:`storable` keeps a ``MetaTensor``'s data
META_TAG = "__meta_tensor__"

#: seconds since its last write after which an entry's temporary file is a killed writer's leftover: an entry (one
#: decoded item, tens to hundreds of MB) is written in seconds even to a network file system, and each write moves the
#: file's mtime, so an hour is far beyond any live writer, on any rank or node sharing the folder
LEFTOVER_AGE_S = 3600.0

# the cache folders this process has already cleared of leftovers: a listing of a huge folder once, not per entry
_swept: set[str] = set()


def _remove_stale_temporaries(cache_dir: Path) -> None:
    """Remove the temporaries that writers killed before their rename left in ``cache_dir``, once per process and
    folder (one listing of a folder that may hold an archive's entries, not one per entry)."""
    key = os.path.realpath(cache_dir)
    if key in _swept:
        return
    _swept.add(key)
    try:
        removed = remove_stale_temporaries(cache_dir, LEFTOVER_AGE_S)
    except OSError as e:  # another user's folder, read-only: the leftovers cost only space
        logger.debug("disk cache: cannot remove leftover temporaries in %s (%s)", cache_dir, e)
        return
    if removed:
        logger.info("disk cache: removed %d temporary file(s) that killed writers left in %s", removed, cache_dir)


def _file_stats(value) -> list:
    """``(path, size, mtime_ns)`` of every existing file named in ``value`` (a path or nested lists/dicts of them)."""
    if isinstance(value, (str, os.PathLike)):
        try:
            st = os.stat(value)
        except (OSError, ValueError):
            return []
        return [(str(value), st.st_size, st.st_mtime_ns)] if os.path.isfile(value) else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _file_stats(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _file_stats(v)]
    return []


def item_hash(item) -> bytes:
    """Cache key of a data item: MONAI's ``pickle_hashing`` of the item together with the size and modification
    time of each file it names (a file rewritten in place gets a new key) and the entry format."""
    return pickle_hashing({"item": item, "files": _file_stats(item), "format": ENTRY_FORMAT})


def _plain(value):
    """``value`` (a metadata value) as what ``torch.load(weights_only=True)`` reads back, or None when it has no
    such form (it is then left out)."""
    if isinstance(value, torch.Tensor):
        return value.as_tensor() if isinstance(value, MetaTensor) else value
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value) if value.dtype.kind in "biuf" else None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        return str(value)  # a MONAI StrEnum (the space) as its plain string
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(v is None for v in items) else items
    return None


def storable(value):
    """``value`` with each ``MetaTensor`` as ``{META_TAG: tensor, "meta": its plain metadata}``, which
    ``torch.load(weights_only=True)`` reads back; :func:`restored` undoes it. (The applied operations, needed only to
    invert transforms, are not kept.)"""
    if isinstance(value, MetaTensor):
        meta = {k: _plain(v) for k, v in value.meta.items()}
        return {META_TAG: value.as_tensor(), "meta": {k: v for k, v in meta.items() if v is not None}}
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(storable(v) for v in value)
    return convert_to_tensor(value, convert_numeric=False, track_meta=False)


def restored(value):
    """The value :func:`storable` was given, its ``MetaTensor``s rebuilt with their metadata."""
    if isinstance(value, dict) and META_TAG in value:
        return MetaTensor(value[META_TAG], meta=value["meta"])
    if isinstance(value, dict):
        return {k: restored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(restored(v) for v in value)
    return value


def transforms_hash(transforms) -> bytes:
    """Hash of the cached transforms with their settings (pickled). A transform that cannot be pickled (e.g. one
    holding a lambda) leaves only the class names in the key, and a warning says so."""
    try:
        return pickle_hashing(transforms)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        names = [type(t).__name__ for t in transforms]
        logger.warning("disk cache: the preprocessing cannot be pickled (%s), so its key holds only %s: after changing "
                       "a setting of these transforms, delete the cache folder", e, names)
        return pickle_hashing(names)


class DiskCacheDataset(PersistentDataset):
    """``PersistentDataset`` over a kept cache folder, keyed by item, file stats and transform configuration.

    Args:
        data: data dicts (JSON-serialisable values, e.g. a datalist section).
        transform: a ``Compose`` or list of transforms; the part before the first random transform is cached.
        cache_dir: folder of the entries (created if absent; never emptied).
        hash_transform: hashing of the transforms' configuration, added to every key (``None``: not included).
    """

    def __init__(self, data: Sequence, transform: Sequence[Callable] | Callable, cache_dir: str | os.PathLike,
                 hash_transform: Callable[..., bytes] | None = transforms_hash) -> None:
        # cache_dir=None at construction: MONAI 1.6 would otherwise remove the folder and everything in it
        super().__init__(data=data, transform=transform, cache_dir=None, hash_func=item_hash, hash_transform=hash_transform)
        self.cache_dir = Path(cache_dir)
        # the folder or one above it (pretraining caches under cache_dir/ct) may be a file of the user's
        blocking = next((p for p in (self.cache_dir, *self.cache_dir.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise ValueError(f"{blocking}: a file stands where the disk cache folder goes; pass another --cache_dir "
                             "or move that file")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.cache_dir)
        self._warned: set[str] = set()  # what was already logged: a message per file or failure, not per read

    def set_data(self, data: Sequence) -> None:
        """Use ``data`` from now on; the cache folder is kept (``PersistentDataset`` deletes it with everything in
        it). Entries of other items are never served for these: an entry's key is its item and the item's files."""
        self.data = data

    def entry_path(self, item) -> Path:
        """The file of ``item``'s entry (MONAI's naming: the item's key, then the transforms' hash)."""
        return self.cache_dir / f"{self.hash_func(item).decode('utf-8')}{self.transform_hash}.pt"

    def _cachecheck(self, item_transformed):
        """``item_transformed`` processed up to the first random transform: its entry read back, or, when there is
        none or it cannot be read, computed and stored."""
        entry = self.entry_path(item_transformed)
        if entry.is_file():
            try:
                stored, said = kept_apart(torch.load(entry, weights_only=self.weights_only))
                value = restored(stored)
                if get_worker_info() is None:  # workers start anew each epoch: each would say it again
                    say_again(said + stored_warnings(entry))
                return value
            except FileNotFoundError:  # replaced or removed since is_file: compute it
                pass
            except Exception as e:  # noqa: BLE001 - a truncated or foreign entry is a miss, never a lost sample
                self._warn_once(str(entry), "disk cache: entry %s cannot be read (%s); computing the item again and "
                                "replacing it", entry, str(e).splitlines()[0] if str(e) else type(e).__name__)
        with warnings_logged() as said:
            value = self._pre_transform(deepcopy(item_transformed))  # keep the original, it is the key
        self._store(entry, value, said)
        return value

    def _store(self, entry: Path, value, said: list) -> None:
        """Write ``value`` to a temporary file beside ``entry`` and rename it into place: a reader, another rank
        included, sees either no entry or a whole one. A failed write (full disk, read-only folder) is logged once
        and costs only the cache: the computed item is used all the same."""
        # a unique name per writer: two ranks storing the same item must not write into one file. A killed writer's
        # file, tagged and not ending in .pt, is never read; it is not removed here (``atomic_path`` does), as it may
        # be another rank's write in progress, but once old enough to have no writer (_remove_stale_temporaries)
        tmp = None
        try:
            store_warnings(entry, said)  # first: a writer killed in between leaves no entry with another's words
            tmp = temporary_beside(entry)
            with open(tmp, "wb") as f:
                torch.save(storable(value), f, pickle_module=look_up_option(self.pickle_module, SUPPORTED_PICKLE_MOD),
                           pickle_protocol=self.pickle_protocol)
            os.replace(tmp, entry)
        except Exception as e:  # noqa: BLE001 - the cache is an optimisation: failing to fill it must not fail the item
            self._warn_once(f"write {type(e).__name__}", "disk cache: cannot write %s (%s); until %s has space and is "
                            "writable, items are computed each time", entry, e, self.cache_dir)
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _warn_once(self, key: str, message: str, *args) -> None:
        """Log ``message`` the first time ``key`` comes up in this process: a broken entry or a full disk, one line."""
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def cached(self, item):
        """``item`` processed up to the first random transform: from the cache, or computed and stored."""
        return self._cachecheck(item)

    def randomised(self, item):
        """The rest of the transforms (from the first random one) applied to a :meth:`cached` result."""
        return self._post_transform(item)

    def fill(self, num_workers: int | None = 0, progress: bool = True) -> dict[int, str]:
        """Compute and store the entry of every item that has none yet (what the first epoch would do), in
        ``num_workers`` threads, and return ``{index: reason}`` of the items whose preprocessing fails
        (:func:`~unimiss_monai.data.tolerant.failed_case`). An item whose entry exists passed its loading and checks
        when the entry was computed (:data:`ENTRY_FORMAT`): it is not decoded again, so over a warm cache this costs
        a look-up per item, and the reading of its warnings file where it has one (they are said here, once each).

        Under a process group this is a collective (every rank calls it): each rank computes and stores the entries of
        its share of the items only, and every rank returns the failures of all
        (:func:`~unimiss_monai.data.split_check.shared_failures`), so a cold cache shared by the ranks is filled once,
        not once per rank; a rank reads the others' entries when it draws their items."""
        return shared_failures(self.data, self._check, num_workers, progress)

    def _check(self, item) -> None:
        """Compute ``item``'s entry where there is none, else say again the warnings stored with it."""
        entry = self.entry_path(item)
        if entry.is_file():
            say_again(stored_warnings(entry))
        else:
            self.cached(item)

    def say_stored(self) -> None:
        """Say the warnings stored with the items' existing entries, once per message, reading only their warnings
        files: what a run that does not :meth:`fill` (pretraining) says in its main process, as workers do not."""
        for item in self.data:
            say_again(stored_warnings(self.entry_path(item)))


# a data-loading worker started by spawn receives what the run said with its data set, so it does not say it again
sent_with_said(DiskCacheDataset, SAID_AGAIN)


class CheckedCacheDataset(CacheDataset):
    """MONAI ``CacheDataset`` whose fill outlives a failing item and then refuses the split, naming every such item.

    The fill (at construction and in ``set_data``) runs the deterministic head of each item once: an item of the cached
    part as it is cached, any other (``cache_rate < 1``) with its result dropped, as an epoch computes it anyway. An
    item that fails is recorded with its reason (:func:`~unimiss_monai.data.tolerant.failed_case`) and the fill goes
    on; after it, ``ValueError`` names the failing items by their place in the datalist
    (:func:`~unimiss_monai.data.tolerant.refuse_failures`), before any training.

    Under a process group each rank fills and holds the whole cache, by design: a rank draws its share of each epoch
    from every item (reshuffled, or class-balanced), so it needs them all in its own memory. Its check then covers every
    item, and the ranks reach the same verdict with no collective, unlike the disk cache and no cache, whose check is
    dealt out over the ranks (:func:`~unimiss_monai.data.split_check.shared_failures`).

    Args:
        data, transform: as ``CacheDataset``'s. datalist, split: the datalist file and the section ``data`` is.
        kwargs: the other arguments of ``CacheDataset``.
    """

    def __init__(self, data: Sequence, transform: Sequence[Callable] | Callable, datalist: str | os.PathLike,
                 split: str, **kwargs) -> None:
        self.datalist, self.split = datalist, split
        self._failures: dict[int, str] | None = None  # {index: reason} while a fill runs
        super().__init__(data=data, transform=transform, **kwargs)

    def _fill_cache(self, indices=None) -> list:
        self._failures = {}
        try:
            cache = super()._fill_cache(indices)
            cached = set(range(self.cache_num) if indices is None else indices)
            for index in (i for i in range(len(self.data)) if i not in cached):
                self._load_cache_item(index)  # checked only: no cache holds it
            failures = self._failures
        finally:
            self._failures = None
        refuse_failures(failures, len(self.data), self.datalist, self.split)
        return cache

    def _load_cache_item(self, idx: int):
        """Item ``idx`` up to the first random transform; during a fill, ``None`` where it fails (recorded)."""
        try:
            return super()._load_cache_item(idx)
        except Exception as err:  # noqa: BLE001 - every failing item is named once the fill is done
            if self._failures is None:  # outside a fill nothing records it: it must not pass on as a None item
                raise
            self._failures[idx] = failed_case(self.data[idx], idx, err)
            return None


def cached_dataset(data: Sequence, transform: Sequence[Callable] | Callable, cache: str = "memory",
                   cache_dir: str | os.PathLike | None = None, cache_rate: float = 1.0, num_workers: int | None = 0,
                   progress: bool = True) -> Dataset:
    """The training or validation data set of a fine-tune bundle, cached as ``cache`` says.

    Where ``data`` is a :class:`~unimiss_monai.data.tolerant.DatalistSplit`, every item goes through the deterministic
    head of ``transform`` (loading and the input checks) before the data set is returned, and ``ValueError`` names
    each item that fails by its place in the datalist, with its reason
    (:func:`~unimiss_monai.data.tolerant.refuse_failures`): a training run refuses its bad inputs together before any
    work, instead of stopping at the first its loader reaches. The check is the cache's own work where there is one:
    the memory cache is filled once (:class:`CheckedCacheDataset`), the disk cache computes the entries it lacks and
    reads none of those it has (:meth:`DiskCacheDataset.fill`); without a cache the head runs once on each item.
    Under a process group (``torchrun``) the disk cache's and the uncached check run each item on one rank only and
    every rank raises the same refusal (:mod:`~unimiss_monai.data.split_check`); each rank fills its own memory cache.

    Args:
        data: data dicts (a ``DatalistSplit``: checked). transform: the preprocessing.
        cache: ``"memory"`` (MONAI ``CacheDataset``: the deterministic part of every item held in memory, the
            default for datalists that fit), ``"disk"`` (:class:`DiskCacheDataset` under ``cache_dir``: for
            archives larger than memory; kept between runs) or ``"none"`` (MONAI ``Dataset``: every item decoded
            every time).
        cache_dir: folder of the disk cache; required for ``"disk"``.
        cache_rate: fraction of items held in memory (``"memory"`` only).
        num_workers: threads that fill the memory cache, or check the items (and fill the disk cache).
        progress: show a progress bar while the memory cache fills or the items are checked.
    """
    mode = str(cache).lower()
    if mode not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
    if cache_dir and mode != "disk":  # a cache folder asked for and never written would go unnoticed
        raise ValueError(f"cache_dir {str(cache_dir)!r} is used only by the disk cache, and cache is {mode!r}: add "
                         "--cache disk, or drop --cache_dir")
    if mode == "disk" and not cache_dir:
        raise ValueError("cache='disk' needs a cache_dir, e.g. --cache_dir /scratch/unimiss_cache")
    source = data if isinstance(data, DatalistSplit) else None  # the file and section a refusal names
    if mode == "memory":
        memory = {"cache_rate": cache_rate, "num_workers": num_workers, "progress": progress}
        if source is None:
            return CacheDataset(data=data, transform=transform, **memory)
        return CheckedCacheDataset(data=data, transform=transform, datalist=source.datalist, split=source.split,
                                   **memory)
    if mode == "disk":
        dataset = DiskCacheDataset(data=data, transform=transform, cache_dir=cache_dir)
    else:
        dataset = Dataset(data=data, transform=transform)
    if source is not None:  # nothing to share without a cache: the head runs once for the check alone
        failures = (dataset.fill(num_workers, progress) if mode == "disk"
                    else shared_failures(data, deterministic_head(transform), num_workers, progress))
        refuse_failures(failures, len(data), source.datalist, source.split)
    return dataset
