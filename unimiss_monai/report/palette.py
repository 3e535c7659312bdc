"""The report's names for the package's structure colours (:func:`unimiss_monai.conventions.structure_colour`), the
same in the report's legends as in every bundle picture, and their ``#rrggbb`` form for HTML."""

from __future__ import annotations

from unimiss_monai.conventions import STRUCTURE_COLOURS as PALETTE
from unimiss_monai.conventions import structure_colour as colour

__all__ = ["PALETTE", "colour", "hex_colour"]


def hex_colour(name: str) -> str:
    """``#rrggbb`` of :func:`colour`."""
    return "#%02x%02x%02x" % colour(name)
