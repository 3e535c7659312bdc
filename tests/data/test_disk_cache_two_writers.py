"""One disk cache entry written by two ranks at once, and read by a third meanwhile (ranks share a cache folder, and
a rank may draw an item whose entry another rank is storing): the writers never share a file, the reader never sees
part of one, and the entry that stays is whole."""

from __future__ import annotations

import io

import torch
from test_disk_cache import LOADS
from test_disk_cache_writes import _pipeline, _volume, _whole

from unimiss_monai.data.disk_cache import DiskCacheDataset


def test_a_reader_between_two_writers_of_one_entry_reads_a_whole_one(tmp_path, monkeypatch):
    item, cache = _volume(tmp_path), tmp_path / "cache"
    first, second, reader = (DiskCacheDataset([item], _pipeline(), cache) for _ in range(3))  # three ranks
    entry = first.entry_path(item)
    real_save, seen = torch.save, {}
    LOADS.clear()

    def paused_half_way(obj, f, *args, **kwargs):
        if seen:  # the other writers: whole at once
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        # the first writer is half way: its bytes are in a temporary of its own, nothing is under the entry's name
        seen["half way"] = sorted(p.name for p in cache.iterdir())
        seen["second"] = second.cached(dict(item))["image"]  # another rank computes and stores the same entry now
        seen["read"] = reader.cached(dict(item))["image"]  # and a third reads it
        seen["decoded"] = list(LOADS)
        f.write(data[len(data) // 2:])

    monkeypatch.setattr(torch, "save", paused_half_way)
    mine = first.cached(dict(item))["image"]
    (half_way,) = seen["half way"]
    assert half_way.startswith(f".{entry.name}.") and not half_way.endswith(".pt"), half_way
    # the second writer decoded the item; the reader found its whole entry and decoded nothing
    assert seen["decoded"] == [item["image"], item["image"]], seen["decoded"]
    assert torch.equal(seen["read"], mine) and torch.equal(seen["second"], mine)
    # the first writer's rename replaced the second's entry whole; neither left its temporary behind
    assert sorted(cache.iterdir()) == [entry] and _whole(entry)
    LOADS.clear()
    assert torch.equal(DiskCacheDataset([item], _pipeline(), cache).cached(dict(item))["image"], mine)
    assert LOADS == []
