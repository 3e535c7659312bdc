"""unimiss_monai.utils."""
