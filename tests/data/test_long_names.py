"""An output whose name is near the file system's limit (255 bytes) is written: its temporary, which adds a random
part and a tag, carries a shortened name. The case failed with "File name too long" on the temporary alone, after
its label map was written."""

from __future__ import annotations

import os

from unimiss_monai.data.temporaries import held_temporary, remove_leftovers, temporaries_of
from unimiss_monai.data.writers import atomic_path
from unimiss_monai.utils.temporary_names import TMP_TAG, is_temporary_name


def test_a_name_near_the_limit_is_written_and_its_leftovers_are_cleared(tmp_path):
    long = "x" * 236 + "_a_overlay.png"  # 250 bytes: fits; with ".<random>.unimiss-tmp.png" it would not
    other = "x" * 236 + "_b_overlay.png"  # the same beginning and end: told apart by the hash of the whole
    with atomic_path(tmp_path / long) as tmp:
        assert len(tmp.name.encode()) <= 255 and is_temporary_name(tmp.name)
        tmp.write_bytes(b"picture")
    assert (tmp_path / long).read_bytes() == b"picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == [long]
    tail = f"{TMP_TAG}.png"
    # a writer killed before its rename leaves its temporary: the next write of the same name removes it, and only it
    with held_temporary(tmp_path / long, tail) as killed, held_temporary(tmp_path / other, tail) as mine:
        assert temporaries_of(tmp_path / long, tail) == [killed] and temporaries_of(tmp_path / other, tail) == [mine]
        killed_name, mine_name = killed.name, mine.name
    for name in (killed_name, mine_name):  # as a killed run leaves them
        (tmp_path / name).write_bytes(b"half")
    remove_leftovers(tmp_path / long, tail)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([long, mine_name])
    name = "é" * 120 + ".nii.gz"  # 247 bytes in UTF-8: cut on a character, not inside one
    with atomic_path(tmp_path / name) as tmp:
        assert len(tmp.name.encode()) <= 255 and "\ufffd" not in tmp.name
        tmp.write_bytes(b"ct")
    assert (tmp_path / name).read_bytes() == b"ct"
    undecodable = os.fsdecode(b"M\xfcller_" + b"x" * 240 + b".png")  # Latin-1 bytes on a UTF-8 file system
    with atomic_path(tmp_path / undecodable) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255
        tmp.write_bytes(b"film")
    assert (tmp_path / undecodable).read_bytes() == b"film"
