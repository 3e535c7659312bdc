"""MONAI transforms of this package, as array/dictionary pairs (``X`` works on one channel-first array, ``Xd`` on a
data dictionary), grouped by concern like ``monai.transforms``."""

from unimiss_monai.transforms.croppad import *  # noqa: F401,F403,E402
from unimiss_monai.transforms.drr import *  # noqa: F401,F403,E402
from unimiss_monai.transforms.intensity import *  # noqa: F401,F403,E402
from unimiss_monai.transforms.io import *  # noqa: F401,F403,E402
from unimiss_monai.transforms.labels import *  # noqa: F401,F403,E402
from unimiss_monai.transforms.utility import *  # noqa: F401,F403,E402
from unimiss_monai.transforms.xray import *  # noqa: F401,F403,E402
from unimiss_monai.transforms.ssl import ct_views_pipeline, drr_views_pipeline, view_keys, xray_views_pipeline  # noqa: F401,E402
