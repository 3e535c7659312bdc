"""unimiss_monai.engines."""
