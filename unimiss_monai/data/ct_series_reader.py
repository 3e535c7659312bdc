"""A MONAI image reader for a folder of grey DICOM slices that keeps every slice's own rescale.

ITK stacks a series in the pixel type of its first slice while it rescales each slice with that slice's own slope and
intercept: a slice whose rescaled values do not fit that type (int16, a slope of 1000 on one slice) wraps around and
reads as plausible HU. Asked for float pixels, ITK keeps them; the input checks then refuse the slice by name
(:func:`unimiss_monai.data.ct_io.check_not_air_only`). Only grey slices: asked for float pixels, ITK would average a
colour series into one grey channel, which the checks could no longer tell from a CT.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from monai.config import PathLike
from monai.data import ITKReader
from monai.utils import ensure_tuple

from unimiss_monai.data.image_formats import dicom_files_in

__all__ = ["CTSeriesReader", "is_grey_dicom_folder"]

# the reads going on, and ITK's warning display as it was before the first of them
_QUIET, _READS = threading.Lock(), {"going_on": 0, "shown": True}


def _after_fork_in_child() -> None:
    """A process forked while a thread read (a DataLoader worker) has none of those reads: a fresh lock (the parent's
    may have been held), no reads counted, and ITK's warnings as they were before them."""
    global _QUIET
    _QUIET = threading.Lock()
    if _READS["going_on"]:
        _READS["going_on"] = 0
        import itk  # imported already: a read was going on

        itk.Object.SetGlobalWarningDisplay(_READS["shown"])


os.register_at_fork(after_in_child=_after_fork_in_child)


def is_grey_dicom_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder whose first DICOM file holds one value per pixel (grey), as a CT series does."""
    import pydicom

    folder = Path(path)
    if not folder.is_dir():
        return False
    first = next(dicom_files_in(folder), None)  # one header read, not every slice sniffed
    try:
        return first is not None and int(pydicom.dcmread(first, stop_before_pixels=True).get("SamplesPerPixel", 1)) == 1
    except Exception:  # noqa: BLE001 - a header pydicom cannot parse is the reader's business
        return False


class CTSeriesReader(ITKReader):
    """MONAI's ``ITKReader`` for a folder holding a series of grey DICOM slices, read with float pixels.

    ``verify_suffix`` accepts only such folders, so registered with a ``LoadImage`` (as
    :class:`~unimiss_monai.transforms.LoadCTImage` does) it reads DICOM series and leaves every file to the reader
    ``LoadImage`` picks for it (a NIfTI file to nibabel). It is asked before the DICOM reader that
    ``MONAI_DICOM_READER`` names. A folder is judged grey by its first DICOM file: keep one series per folder (ITK
    reads the first of several, and the bundles' input checks refuse such a folder). Arguments are ``ITKReader``'s; a
    ``pixel_type`` given there or to ``read`` is kept.
    """

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = ensure_tuple(filename)
        return len(names) == 1 and is_grey_dicom_folder(names[0])

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs):
        import itk

        chosen = "pixel_type" in kwargs or "pixel_type" in self.kwargs  # the caller's choice stands
        if not chosen and all(is_grey_dicom_folder(name) for name in ensure_tuple(data)):
            kwargs["pixel_type"] = itk.F
        # ITK prints a multi-line warning of its own (a missing slice, uneven spacing) to stderr; the input checks
        # refuse such a series in one line naming it and the fix (dicom_checks), so its warning only comes first.
        # The switch is ITK's, for the whole process: reads in several threads turn it back on after the last one
        with _QUIET:
            if _READS["going_on"] == 0:
                _READS["shown"] = itk.Object.GetGlobalWarningDisplay()
                itk.Object.SetGlobalWarningDisplay(False)
            _READS["going_on"] += 1
        try:
            return super().read(data, **kwargs)
        finally:
            with _QUIET:
                _READS["going_on"] -= 1
                if _READS["going_on"] == 0:
                    itk.Object.SetGlobalWarningDisplay(_READS["shown"])
