"""Deprecated module: its names moved to :mod:`unimiss_monai.visualize.saliency`."""

from unimiss_monai.utils.lazy import moved_names

__getattr__ = moved_names(__name__, {n: "unimiss_monai.visualize.saliency" for n in ("default_target_layer", "grad_cam", "saliency_png")})
