"""unimiss_monai.drr."""
