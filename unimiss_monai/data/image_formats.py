"""The image file formats the project knows: which suffix of a file name is its format, and which files a folder
scan takes as images.

One list serves every reader of a name (output names, case names, reports) and every folder scan, so that a format
one of them knows is never part of a name for another.
"""

from __future__ import annotations

import os

__all__ = ["ARRAY_SUFFIXES", "IMAGE_SUFFIXES", "NIFTI_SUFFIXES", "SCANNED_SUFFIXES", "image_suffix", "split_image_name"]

#: suffixes of the files MONAI's ``LoadImage`` reads (longest first: ``.nii.gz`` before ``.nii``); a suffix of this
#: list is the file's format, never part of its name
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".dcm", ".nrrd", ".mha", ".mhd", ".tif", ".tiff", ".bmp",
                  ".npy", ".npz")
#: numpy arrays: readable when a datalist names them, but a folder scan leaves them out (a folder of scans often
#: holds arrays that are not images)
ARRAY_SUFFIXES = (".npy", ".npz")
#: the files a folder scan takes as images
SCANNED_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s not in ARRAY_SUFFIXES)
#: the files a CT folder scan takes as volumes (a DICOM series is a folder)
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def image_suffix(name: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> str:
    """The suffix of ``suffixes`` that ``name`` ends with (any letter case; ``""`` for none). A name that is only a
    suffix (``.nii``, a hidden file) has none."""
    lower = os.path.basename(str(name).rstrip("/\\")).lower()
    return next((s for s in suffixes if lower.endswith(s) and len(lower) > len(s)), "")


def split_image_name(path: str | os.PathLike) -> tuple[str, str]:
    """``(stem, format)`` of an input: ``/d/x.nii.gz`` -> ``("x", "nii.gz")``. Only a suffix of
    :data:`IMAGE_SUFFIXES` is a format; other dots belong to the name (``ct.v2.nii.gz`` -> ``("ct.v2", "nii.gz")``, a
    DICOM series folder ``1.2.840.5`` -> ``("1.2.840.5", "")``)."""
    name = os.path.basename(str(path).rstrip("/\\"))
    suffix = image_suffix(name)
    return (name[: -len(suffix)], suffix[1:]) if suffix else (name, "")
