"""Transforms of label maps: TotalSegmentator structures to compact classes, and the segmentation input contract."""

from unimiss_monai.transforms.labels.array import SelectStructures
from unimiss_monai.transforms.labels.dictionary import (
    CheckSegmentationInputD,
    CheckSegmentationInputd,
    CheckSegmentationInputDict,
    SelectStructuresD,
    SelectStructuresd,
    SelectStructuresDict,
)

__all__ = [
    "CheckSegmentationInputD",
    "CheckSegmentationInputDict",
    "CheckSegmentationInputd",
    "SelectStructures",
    "SelectStructuresD",
    "SelectStructuresDict",
    "SelectStructuresd",
]
