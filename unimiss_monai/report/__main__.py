"""``python -m unimiss_monai.report RUN_DIR``: the same as ``python -m unimiss_monai report RUN_DIR``."""

import sys

from .command import main

sys.exit(main())
