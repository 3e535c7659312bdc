"""unimiss_monai: universal medical self-supervised learning across 2D X-ray and 3D CT, as a MONAI plugin.

Subpackages are imported on first use (PEP 562), so ``python -m unimiss_monai --help`` does not pay for torch, MONAI
and numba, while a bundle config can still write ``"$import unimiss_monai"`` and then refer to
``unimiss_monai.drr.render`` or ``unimiss_monai.networks.UniMissSegmentation``. See ARCHITECTURE.md for the rooms.
"""

import logging
import warnings

from unimiss_monai.utils.lazy import lazy_exports

# MONAI 1.6's LoadImage tries to register nvImageCodec, a GPU decoder for compressed DICOM, every time it is built,
# and each time it is missing says so twice (a log line and a Python warning): a few times in every bundle run on a
# machine without it. The fallback it announces, pydicom's own decoders, is what this package reads DICOM with, so
# hiding both loses nothing.
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register")
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)

__version__ = "0.2.13"

_SUBPACKAGES = (
    "benchmarks", "conventions", "data", "drr", "engines", "handlers", "inferers", "losses", "metrics", "networks",
    "transforms", "utils", "visualize",
)
__all__ = ["__version__", *_SUBPACKAGES]
__getattr__, __dir__ = lazy_exports(__name__, {name: "" for name in _SUBPACKAGES})
