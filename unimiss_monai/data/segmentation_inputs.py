"""The inputs of a segmentation inference run: every CT of a folder, or the ``testing`` list of its datalist."""

from __future__ import annotations

import os

from unimiss_monai.data.ct_inputs import find_ct_cases
from unimiss_monai.data.samples import find_dataset

__all__ = ["find_segmentation_inputs", "NAME_KEY"]

#: the data item key of a case's name, which names its outputs: a series folder's path below the folder
#: (``P1/ST1/SE1`` -> ``P1_ST1_SE1``) or a datalist entry's ``name``, where the file name would be shared
NAME_KEY = "name"


def find_segmentation_inputs(dataset_dir: str | os.PathLike, name: str = "ct_segmentation") -> list[dict[str, str]]:
    """``[{"image": path, "name": case name}]`` for every CT in ``dataset_dir``: NIfTI files and DICOM series folders
    (:func:`~unimiss_monai.data.find_ct_cases`), or the ``testing`` list of its ``datalist.json`` (a ``samples``
    output resolves to its ``name`` data set first)."""
    return [{"image": str(case.image), NAME_KEY: case.name} for case in find_ct_cases(find_dataset(dataset_dir, name))]
