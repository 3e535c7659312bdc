"""A disk cache of the deterministic part of preprocessing, for datalists larger than memory.

MONAI's ``PersistentDataset`` runs a ``Compose`` up to its first random transform once per item, saves the result
under ``cache_dir`` and afterwards reads it back, so an epoch over a CT archive does not decode every volume again.
:class:`DiskCacheDataset` keeps that mechanism and changes three things a long-lived, shared cache needs:

- an existing ``cache_dir`` is kept: ``PersistentDataset`` of MONAI 1.6 empties it at construction and in
  ``set_data``, which would throw away the previous run's cache and delete whatever a user kept in a folder they
  named;
- an item's key includes the size and modification time of every file it names, so a file replaced in place is
  decoded again instead of served stale;
- the key includes the cached transforms with their settings (a hash of them pickled; MONAI's default
  ``json_hashing`` cannot serialise transforms and falls back to their class names, so a changed setting such as a
  new spacing would reuse the old entries), so changing the preprocessing starts a new set of entries.

Entries are written through a temporary file and renamed (MONAI's own scheme), so a killed run leaves no half-written
entry, and read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import pickle_hashing

__all__ = ["CACHE_MODES", "DiskCacheDataset", "cached_dataset", "item_hash", "transforms_hash"]

logger = logging.getLogger(__name__)

#: the ``cache`` choices of :func:`cached_dataset`
CACHE_MODES = ("memory", "disk", "none")


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
    time of each file it names (a file rewritten in place gets a new key)."""
    return pickle_hashing({"item": item, "files": _file_stats(item)})


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
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def set_data(self, data: Sequence) -> None:
        """Use ``data`` from now on; the cache folder is kept (``PersistentDataset`` deletes it with everything in
        it). Entries of other items are never served for these: an entry's key is its item and the item's files."""
        self.data = data

    def cached(self, item):
        """``item`` processed up to the first random transform: from the cache, or computed and stored."""
        return self._cachecheck(item)

    def randomised(self, item):
        """The rest of the transforms (from the first random one) applied to a :meth:`cached` result."""
        return self._post_transform(item)


def cached_dataset(data: Sequence, transform: Sequence[Callable] | Callable, cache: str = "memory",
                   cache_dir: str | os.PathLike | None = None, cache_rate: float = 1.0, num_workers: int | None = 0,
                   progress: bool = True) -> Dataset:
    """The training or validation data set of a fine-tune bundle, cached as ``cache`` says.

    Args:
        data: data dicts. transform: the preprocessing.
        cache: ``"memory"`` (MONAI ``CacheDataset``: the deterministic part of every item held in memory, the
            default for datalists that fit), ``"disk"`` (:class:`DiskCacheDataset` under ``cache_dir``: for
            archives larger than memory; kept between runs) or ``"none"`` (MONAI ``Dataset``: every item decoded
            every time).
        cache_dir: folder of the disk cache; required for ``"disk"``.
        cache_rate: fraction of items held in memory (``"memory"`` only).
        num_workers: threads that fill the memory cache (``"memory"`` only).
        progress: show a progress bar while the memory cache fills (``"memory"`` only).
    """
    mode = str(cache).lower()
    if mode not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
    if mode == "memory":
        return CacheDataset(data=data, transform=transform, cache_rate=cache_rate, num_workers=num_workers, progress=progress)
    if mode == "disk":
        if not cache_dir:
            raise ValueError("cache='disk' needs a cache_dir, e.g. --cache_dir /scratch/unimiss_cache")
        return DiskCacheDataset(data=data, transform=transform, cache_dir=cache_dir)
    return Dataset(data=data, transform=transform)
