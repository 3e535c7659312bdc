"""unimiss_monai.benchmarks."""
