"""The inputs of a segmentation inference run: every CT of a folder, or the held-out list of its datalist."""

from __future__ import annotations

import os

from unimiss_monai.data.case_names import NAME_KEY
from unimiss_monai.data.ct_inputs import find_ct_cases
from unimiss_monai.data.listed_inputs import INFERENCE_SPLITS
from unimiss_monai.data.samples import find_dataset

__all__ = ["find_segmentation_inputs"]


def find_segmentation_inputs(dataset_dir: str | os.PathLike, name: str = "ct_segmentation") -> list[dict[str, str]]:
    """``[{"image": path, "name": case name}]`` for every CT in ``dataset_dir``: NIfTI files and DICOM series folders
    (:func:`~unimiss_monai.data.find_ct_cases`), or the first non-empty ``testing``, ``test``, ``validation`` or
    ``training`` list of its ``datalist.json`` (a ``samples`` output resolves to its ``name`` data set first)."""
    cases = find_ct_cases(find_dataset(dataset_dir, name), INFERENCE_SPLITS)
    return [{"image": str(case.image), NAME_KEY: case.name} for case in cases]
