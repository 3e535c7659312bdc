"""One fixed colour per anatomical structure, shared by every picture and legend of the report.

Paired structures share a hue family (left darker than right), so a reader learns the colours once: lungs blue,
heart red, liver brown, and so on. A structure not listed gets a colour derived from its name, the same in every run.
"""

from __future__ import annotations

import hashlib

__all__ = ["PALETTE", "colour", "hex_colour"]

#: structure name -> RGB (0-255)
PALETTE: dict[str, tuple[int, int, int]] = {
    "lung": (66, 146, 230),
    "lung_left": (31, 100, 200),
    "lung_right": (110, 190, 255),
    "heart": (230, 40, 50),
    "liver": (170, 100, 40),
    "spleen": (150, 60, 200),
    "kidney_left": (0, 150, 110),
    "kidney_right": (60, 210, 160),
    "kidneys": (30, 180, 135),
    "stomach": (255, 150, 30),
    "pancreas": (240, 220, 40),
    "aorta": (255, 60, 200),
    "clavicle_left": (200, 200, 200),
    "clavicle_right": (255, 255, 255),
    "spine": (250, 250, 130),
    "ribs": (255, 215, 160),
    "trachea": (0, 230, 230),
    "esophagus": (190, 130, 100),
}

# a fixed, colour-blind-considerate fallback cycle (Okabe-Ito, without black)
_FALLBACK = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
             (204, 121, 167)]


def colour(name: str) -> tuple[int, int, int]:
    """The RGB colour of ``name`` (a stable fallback, from the name's hash, for structures not in :data:`PALETTE`)."""
    if name in PALETTE:
        return PALETTE[name]
    digest = int(hashlib.sha1(name.encode()).hexdigest(), 16)  # stable across runs, unlike hash()
    return _FALLBACK[digest % len(_FALLBACK)]


def hex_colour(name: str) -> str:
    """``#rrggbb`` of :func:`colour`."""
    return "#%02x%02x%02x" % colour(name)
