"""Inferers (MONAI ``Inferer`` style) used by the fine-tune bundles."""

from unimiss_monai.inferers.mirror import MirrorTTAInferer

__all__ = ["MirrorTTAInferer"]
