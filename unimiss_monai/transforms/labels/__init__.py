"""Transforms of label maps: TotalSegmentator structures to compact classes, a viewer's label map to per-structure
masks, and the segmentation input contract."""

from unimiss_monai.transforms.labels.array import SelectStructures
from unimiss_monai.transforms.labels.dictionary import (
    CheckSegmentationInputD,
    CheckSegmentationInputd,
    CheckSegmentationInputDict,
    SelectStructuresD,
    SelectStructuresd,
    SelectStructuresDict,
)
from unimiss_monai.transforms.labels.label_map import LabelMapToMasks, LabelMapToMasksD, LabelMapToMasksd, LabelMapToMasksDict

__all__ = [
    "CheckSegmentationInputD",
    "CheckSegmentationInputDict",
    "CheckSegmentationInputd",
    "LabelMapToMasks",
    "LabelMapToMasksD",
    "LabelMapToMasksDict",
    "LabelMapToMasksd",
    "SelectStructures",
    "SelectStructuresD",
    "SelectStructuresDict",
    "SelectStructuresd",
]
