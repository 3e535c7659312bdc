"""Builders of the demo data sets written by ``python -m unimiss_monai samples``."""
