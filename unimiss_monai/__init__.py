"""unimiss_monai: universal medical self-supervised learning across 2D X-ray and 3D CT, as a MONAI plugin.

Importing the package imports its subpackages, so a bundle config can write ``"$import unimiss_monai"`` and then
refer to ``unimiss_monai.drr.render`` or ``unimiss_monai.networks.UniMissSegmentation``.
"""

__version__ = "0.1.0"

from unimiss_monai import conventions, data, drr, engines, handlers, losses, networks, transforms, utils  # noqa: E402,F401
