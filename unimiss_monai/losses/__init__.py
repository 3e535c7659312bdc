"""unimiss_monai.losses."""
