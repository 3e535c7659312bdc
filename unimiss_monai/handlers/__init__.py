"""unimiss_monai.handlers."""
