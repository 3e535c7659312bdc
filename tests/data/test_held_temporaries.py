"""Two processes writing one output at once: the temporary a living writer holds is not taken for a killed run's
leftover by the other, and the leftover of a writer that was killed is still removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from unimiss_monai.data.temporaries import held_temporary, remove_leftovers, remove_stale_temporaries
from unimiss_monai.data.writers import OUTPUT_MARKER, atomic_path, save_json, staged_dir

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX's")


def test_a_folder_staged_by_two_writers_at_once_ends_whole(tmp_path):
    target = tmp_path / "case"
    with staged_dir(target) as first:
        save_json({"by": "first"}, first / "a.json")
        with staged_dir(target) as second:  # another run of the same case starts and finishes meanwhile
            save_json({"by": "second"}, second / "a.json")
        save_json({"by": "first"}, first / "b.json")  # the first one's staging folder is still there
    assert sorted(p.name for p in target.iterdir()) == sorted([OUTPUT_MARKER, "a.json", "b.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]


def test_a_file_written_by_two_writers_at_once_ends_whole(tmp_path):
    target = tmp_path / "datalist.json"
    with atomic_path(target) as first:
        first.write_text('{"by": "first"}')
        with atomic_path(target) as second:
            second.write_text('{"by": "second"}')
    assert target.read_text() == '{"by": "first"}'  # the last rename wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datalist.json"]


def test_the_temporary_of_a_killed_writer_is_removed_and_a_living_ones_kept(tmp_path):
    holder = ("import sys, time; from unimiss_monai.data.temporaries import held_temporary\n"
              "with held_temporary(sys.argv[1], folder=True) as tmp:\n"
              "    print(tmp, flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path / "case")], stdout=subprocess.PIPE, text=True)
    try:
        staging = tmp_path / child.stdout.readline().strip().rsplit("/", 1)[-1]
        assert staging.is_dir()
        remove_leftovers(tmp_path / "case")
        old = time.time() - 3600
        os.utime(staging, (old, old))
        assert remove_stale_temporaries(tmp_path, older_than_s=60) == 0
        assert staging.is_dir()  # its writer lives
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    remove_leftovers(tmp_path / "case")
    assert not staging.exists()  # the system dropped the lock with the process


def test_a_released_temporary_counts_as_a_leftover_again(tmp_path):
    with held_temporary(tmp_path / "x.json") as tmp:
        remove_leftovers(tmp_path / "x.json")
        assert tmp.is_file()
    remove_leftovers(tmp_path / "x.json")
    assert not tmp.exists()


def test_a_writer_waits_out_another_process_look_at_its_temporary_and_holds_it(tmp_path):
    import fcntl
    import threading

    from unimiss_monai.data import temporaries

    tmp = temporaries.temporary_beside(tmp_path / "x.json")
    look = os.open(tmp, os.O_RDONLY)
    fcntl.flock(look, fcntl.LOCK_SH)  # what _held takes, for a moment, in another process
    threading.Timer(0.2, os.close, [look]).start()
    fd = temporaries._lock(tmp, folder=False)  # a busy lock is not "no locks on this file system"
    try:
        assert fd is not None and temporaries._held(tmp)
    finally:
        os.close(fd)


def test_a_temporary_that_cannot_be_locked_is_written_unlocked(tmp_path, monkeypatch):
    import errno

    from unimiss_monai.data import temporaries

    def no_descriptor_left(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(temporaries.os, "open", no_descriptor_left)
    with staged_dir(tmp_path / "case") as tmp:  # a folder: made by mkdir, then the lock's open fails
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "case" / "a.txt").read_text() == "a"
