"""unimiss_monai.transforms."""
