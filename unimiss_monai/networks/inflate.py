"""Inflation of a 2D-only encoder's weights to the 3D branch of the same encoder (2D -> 3D loading rule).

A MiT encoder trained on 2D images only (e.g. the slice encoder of the intra-inter recipe) has ``stem.2d``,
``patch_embeds.i.2d``, ``pos_embeds.i.2d`` and ``blocks.*.attn.sr.2d`` tensors, and shares every other tensor
between dimensions. Its 3D branch is initialised from them by this rule:

- a conv kernel ``(O, I, k, k)`` whose 3D counterpart has depth ``kd``: odd ``kd`` (padded convs: stem, patch
  embeddings): the 2D kernel in the central depth plane, zeros elsewhere, so the 3D conv of a volume equals the 2D conv
  of every slice; even ``kd`` (the kernel = stride spatial reductions of attention): the 2D kernel divided by ``kd``
  on every plane, so it averages the ``kd`` slices it covers (I3D inflation);
- a position embedding ``(1, P + H*W, C)``: resized in-plane to the 3D grid ``(D', H', W')`` and repeated ``D'``
  times along depth (the prefix entries kept);
- tensors of equal shape (norms, biases): copied.

With these rules the 3D encoder applied to a volume of identical slices gives, at every depth, the 2D encoder's
features of that slice (tested in ``tests/bundles/test_intra_inter_recipe.py`` and
``tests/networks/test_pretrained_resize.py``). The stem conv is inflated at the checkpoint's input channels (the loader
then adapts them to the model's). The rule is not applied when the checkpoint holds any 3D encoder tensor, and only
the encoder is inflated: a decoder's 3D tensors (e.g. its transposed up-sampling convs, for which the even-depth mean
would halve the output) stay missing, and :func:`~unimiss_monai.networks.load_pretrained` reports them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

from unimiss_monai.networks.blocks.pos_embed import PositionEmbedding, resize_pos_embed
from unimiss_monai.networks.variants import VARIANTS, stage_grids

__all__ = [
    "STEM_CONV", "encoder_pos_grids", "inflate_2d_to_3d", "inflate_conv_weight", "inflate_pos_embed", "source_2d_key",
]

_3D = re.compile(r"\.3d(\.|$)")
_POS_KEY = re.compile(r"(?:^|\.)(decoder\.)?pos_embeds\.(\d)\.3d\.weight$")
#: the first conv of an encoder stem, whose input channels may differ between checkpoint and model
STEM_CONV = re.compile(r"(?:^|\.)stem\.\dd\.0\.0\.conv\.weight$")


def source_2d_key(key: str) -> str:
    """The ``.2d.`` counterpart of a ``.3d.`` key (``key`` itself when it has no ``.3d.`` part)."""
    return _3D.sub(lambda m: ".2d" + m.group(1), key)


def inflate_conv_weight(weight: torch.Tensor, depth: int) -> torch.Tensor:
    """``(O, I, k1, k2)`` -> ``(O, I, depth, k1, k2)``: central plane for odd ``depth``, mean over planes for even."""
    if weight.ndim != 4 or depth < 1:
        raise ValueError(f"inflate_conv_weight: expected a (O, I, k, k) kernel and depth >= 1, got {tuple(weight.shape)}, {depth}")
    if depth % 2:
        out = weight.new_zeros((*weight.shape[:2], depth, *weight.shape[2:]))
        out[:, :, depth // 2] = weight
        return out
    return weight.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth


def inflate_pos_embed(
    weight: torch.Tensor, grid2d: tuple[int, int], grid3d: tuple[int, int, int], num_prefix: int = 0
) -> torch.Tensor:
    """``(1, P + H*W, C)`` at ``grid2d`` -> ``(1, P + D'*H'*W', C)``: in-plane resize to ``grid3d[1:]``, repeated
    ``grid3d[0]`` times along depth (row-major ``(D', H', W')`` as the 3D patch grid flattens)."""
    plane = resize_pos_embed(weight, grid2d, grid3d[1:], num_prefix)
    prefix, patches = plane[:, :num_prefix], plane[:, num_prefix:]
    return torch.cat((prefix, patches.repeat(1, int(grid3d[0]), 1)), dim=1)


def inflate_2d_to_3d(
    state_dict: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    pos_grids: Callable[[str], tuple[tuple[int, ...], tuple[int, ...], int] | None],
    prefix: str,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Add the 3D encoder tensors ``target`` needs and ``state_dict`` lacks, inflated from their ``.2d.`` counterparts.

    Args:
        state_dict: checkpoint tensors, already named like ``target``.
        target: the model's state dict (names and shapes wanted).
        pos_grids: for a 3D position-embedding key, ``(grid2d, grid3d, num_prefix)``, or ``None`` when the key is no
            position embedding or its 2D grid is unknown (it then stays missing).
        prefix: the encoder's key prefix in ``target`` (``"encoder."`` for a task network, ``""`` when ``target`` is
            the encoder); only keys under it are inflated, other 3D keys (a decoder's) stay missing. No default: with
            ``""`` a task network's decoder would be inflated by the encoder's rule.

    Returns:
        ``(state_dict with the inflated tensors added, ["<key> <rule>", ...])``; unchanged when ``state_dict`` holds a
        3D encoder tensor already. A stem conv of other input channels than ``target``'s keeps the checkpoint's.
    """
    out = dict(state_dict)
    if any(k.startswith(prefix) and _3D.search(k) for k in state_dict):
        return out, []
    inflated = []
    for key, want in target.items():
        source = source_2d_key(key)
        if not key.startswith(prefix) or source == key or key in out or source not in state_dict:
            continue
        v = state_dict[source]
        grids = pos_grids(key)
        same_io = want.shape[:2] == v.shape[:2] or (STEM_CONV.search(key) is not None and want.shape[0] == v.shape[0])
        if v.shape == want.shape:
            out[key], rule = v.clone(), "copied"
        elif v.ndim == 4 and want.ndim == 5 and same_io and want.shape[3:] == v.shape[2:]:
            depth = int(want.shape[2])
            out[key], rule = inflate_conv_weight(v, depth), ("central plane" if depth % 2 else f"mean over {depth}")
        elif grids is not None and v.ndim == 3:
            grid2d, grid3d, num_prefix = grids
            if v.shape[1] != num_prefix + grid2d[0] * grid2d[1]:
                continue
            out[key], rule = inflate_pos_embed(v, grid2d, grid3d, num_prefix), f"{tuple(grid2d)}->{tuple(grid3d)}"
        else:
            continue
        inflated.append(f"{key} ({rule})")
    return out, inflated


def encoder_pos_grids(encoder, info: Mapping, pos_modules: Mapping[str, PositionEmbedding]):
    """``key -> (grid2d, grid3d, num_prefix)`` for the 3D position embeddings of ``encoder`` (a ``MiTEncoder``), the
    2D grid from the checkpoint's ``info["img_size2d"]`` (else the variant's default 2D size); ``None`` for other keys
    (decoder embeddings included: the rule inflates encoders)."""

    def grids(key: str):
        m, k = pos_modules.get(key), _POS_KEY.search(key)
        if encoder is None or m is None or k is None or k.group(1):
            return None
        size = info.get("img_size2d") or VARIANTS.get(encoder.config.name, encoder.config).img_size(2)
        return tuple(stage_grids(encoder.config, 2, size)[int(k.group(2))]), tuple(m.grid), m.num_prefix

    return grids
