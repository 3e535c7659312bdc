"""A DICOM series with a missing slice is refused in the input checks' one line; ITK's own multi-line warning about
it ("Non uniform sampling or missing slices detected") came first on stderr, and no longer does."""

from __future__ import annotations

import pytest

from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.transforms import LoadCTImaged
from unimiss_monai.transforms.utility.array import CheckImage


def test_a_series_with_a_missing_slice_is_refused_without_itks_warning(tmp_path, capfd):
    import itk

    p = make_ct_phantom((24, 24, 12))
    folder = write_dicom_series(p.hu, p.affine, tmp_path / "series")
    sorted(folder.glob("*.dcm"))[6].unlink()
    capfd.readouterr()
    shown = itk.Object.GetGlobalWarningDisplay()
    image = LoadCTImaged("image", image_only=True, ensure_channel_first=True)({"image": str(folder)})["image"]
    assert "WARNING" not in capfd.readouterr().err
    assert itk.Object.GetGlobalWarningDisplay() == shown  # ITK's own setting is given back
    with pytest.raises(ValueError, match=r"its slices are not evenly spaced .* a slice is missing or doubled\): export "
                                         r"the whole series again"):
        CheckImage()(image)


def test_overlapping_reads_in_threads_give_itks_warnings_back_after_the_last(monkeypatch):
    """ITK's warning display is one switch for the process: a read that ended first while another went on turned
    it back on under the other, and the other, ending last, left it off for the rest of the process."""
    import threading

    import itk
    from monai.data import ITKReader

    from unimiss_monai.data.ct_series_reader import CTSeriesReader

    inside, release, during = {1: threading.Event(), 2: threading.Event()}, {1: threading.Event(),
                                                                             2: threading.Event()}, {}

    def read(self, data, **kwargs):  # ITK's read, held open until the test lets it end
        inside[data].set()
        release[data].wait(30)
        during[data] = itk.Object.GetGlobalWarningDisplay()

    monkeypatch.setattr(ITKReader, "read", read)
    shown = itk.Object.GetGlobalWarningDisplay()
    itk.Object.SetGlobalWarningDisplay(True)
    try:
        threads = {n: threading.Thread(target=CTSeriesReader().read, args=(n,), kwargs={"pixel_type": None})
                   for n in (1, 2)}
        threads[1].start()
        assert inside[1].wait(30)
        threads[2].start()  # begins while the first goes on
        assert inside[2].wait(30)
        release[1].set()  # the first ends first
        threads[1].join(30)
        assert itk.Object.GetGlobalWarningDisplay() is False  # still quiet: the second goes on
        release[2].set()
        threads[2].join(30)
        assert during == {1: False, 2: False} and itk.Object.GetGlobalWarningDisplay() is True
    finally:
        itk.Object.SetGlobalWarningDisplay(shown)


def test_a_process_forked_during_a_read_has_itks_warnings_back_and_a_free_lock():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import unimiss_monai

    # a read going on (the lock held, ITK quiet) when a worker is forked, as a DataLoader forks them
    code = """
import multiprocessing, sys, itk
from unimiss_monai.data import ct_series_reader as r

def worker():
    free = r._QUIET.acquire(timeout=5)
    sys.exit(0 if free and itk.Object.GetGlobalWarningDisplay() and r._READS["going_on"] == 0 else 3)

if __name__ == "__main__":
    r._QUIET.acquire(); r._READS.update(going_on=1, shown=True); itk.Object.SetGlobalWarningDisplay(False)
    p = multiprocessing.get_context("fork").Process(target=worker)
    p.start(); p.join(60)
    print(p.exitcode)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(unimiss_monai.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.strip() == "0", done.stderr
