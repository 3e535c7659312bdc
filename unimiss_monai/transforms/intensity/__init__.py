"""Intensity transforms (CT HU scaling)."""

from unimiss_monai.transforms.intensity.array import ScaleCTIntensity
from unimiss_monai.transforms.intensity.dictionary import ScaleCTIntensityD, ScaleCTIntensityd, ScaleCTIntensityDict

__all__ = ["ScaleCTIntensity", "ScaleCTIntensityD", "ScaleCTIntensityDict", "ScaleCTIntensityd"]
