"""What a state dict's keys say about the encoder that made it: its family (MiT or MiT+) and depths, the registered
variant of that layout, and the words and fix that name it in a refusal."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from unimiss_monai.networks.variants import VARIANTS

__all__ = ["describe_layout", "detect_variant", "encoder_layout", "layout_fix", "registered_variant"]

_ENCODER_PART = re.compile(r"^((?:[^.]+\.)*?)(stem|patch_embeds|pos_embeds|blocks|cls_token|cls_proj)(\.|$)")


def encoder_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, tuple[int, ...]] | None:
    """``(family, encoder depths)`` from the key layout, or ``None`` without encoder keys.

    Only encoder keys count (bare, or under any prefix but ``decoder.``): the decoder's blocks are numbered like the
    encoder's, so counting them would read a full segmentation network as a deeper encoder.
    """
    enc = set()
    for k in state_dict:
        m = _ENCODER_PART.match(k)
        if m and "decoder" not in m.group(1).split("."):
            enc.add(k[len(m.group(1)):])
    if not any(k.startswith(("stem.", "patch_embeds.", "blocks.")) for k in enc):
        return None
    plus = any(re.match(r"stem\.\dd\.1\.", k) for k in enc) or any(
        k.startswith("patch_embeds.") and ".proj1." in k for k in enc
    )
    depths = tuple(len({k.split(".")[2] for k in enc if k.startswith(f"blocks.{i}.")}) for i in range(4))
    return ("mitplus" if plus else "mit"), depths


def registered_variant(layout: tuple[str, tuple[int, ...]] | None) -> str | None:
    return next((n for n, c in VARIANTS.items() if layout == (c.family, tuple(c.depths))), None)


def detect_variant(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The registered variant (:data:`VARIANTS`) whose family and encoder depths match the key layout: ``mitplus``
    (two-block stem, extra patch convs), ``mit_tiny`` or ``mit_small`` (blocks per encoder stage); ``None`` without
    encoder keys or when no registered variant has that layout."""
    return registered_variant(encoder_layout(state_dict))


def describe_layout(layout: tuple[str, tuple[int, ...]] | None) -> str:
    name = registered_variant(layout)
    if name is not None:
        return f"variant {name}"
    return "no encoder" if layout is None else f"a {layout[0]} encoder with depths {layout[1]} (no registered variant)"


def layout_fix(layout: tuple[str, tuple[int, ...]]) -> str:
    name = registered_variant(layout)
    if name is not None:
        return f"build the model with variant={name!r}"
    base = next(n for n, c in VARIANTS.items() if c.family == layout[0])
    return f"build the model with variant={base!r} and depths={layout[1]}"
