"""unimiss_monai.networks."""
