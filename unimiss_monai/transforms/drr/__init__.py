"""DRR rendering as MONAI transforms (array and dictionary forms)."""

from unimiss_monai.transforms.drr.array import DRRProject, RandDRRProject
from unimiss_monai.transforms.drr.dictionary import (
    DRRProjectD,
    DRRProjectd,
    DRRProjectDict,
    RandDRRProjectD,
    RandDRRProjectd,
    RandDRRProjectDict,
)

__all__ = ["DRRProject", "RandDRRProject", "DRRProjectd", "DRRProjectD", "DRRProjectDict", "RandDRRProjectd",
           "RandDRRProjectD", "RandDRRProjectDict"]
