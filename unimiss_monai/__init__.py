"""unimiss_monai: universal medical self-supervised learning across 2D X-ray and 3D CT, as a MONAI plugin.

Subpackages are imported on first use (PEP 562), so ``python -m unimiss_monai --help`` does not pay for torch, MONAI
and numba, while a bundle config can still write ``"$import unimiss_monai"`` and then refer to
``unimiss_monai.drr.render`` or ``unimiss_monai.networks.UniMissSegmentation``. See ARCHITECTURE.md for the rooms.
"""

from unimiss_monai.utils.lazy import lazy_exports

__version__ = "0.1.0"

_SUBPACKAGES = (
    "benchmarks", "conventions", "data", "drr", "engines", "handlers", "inferers", "losses", "metrics", "networks",
    "transforms", "utils", "visualize",
)
__all__ = ["__version__", *_SUBPACKAGES]
__getattr__, __dir__ = lazy_exports(__name__, {name: "" for name in _SUBPACKAGES})
