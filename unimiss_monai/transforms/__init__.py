"""MONAI transforms of this package, as array/dictionary pairs (``X`` works on one channel-first array, ``Xd`` on a
data dictionary), grouped by concern like ``monai.transforms``."""
