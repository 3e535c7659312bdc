"""Data helpers: sample data sets, real-data locators, synthetic phantoms, image loading."""

from unimiss_monai.data.samples import find_dataset, samples

__all__ = ["find_dataset", "samples"]
