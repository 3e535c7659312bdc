"""Architecture variants of the UniMiSS backbone family, and the input sizes each accepts.

Numbers follow the official code (github.com/YtongXie/UniMiSS-code, ``UniMiSS/models/MiT_encoder.py``,
``UniMiSS/models/MiT.py``, ``UniMiSSPlus/MiTplus.py``):

- ``mit_tiny`` / ``mit_small`` (UniMiSS, ECCV 2022): stem conv k7 (stride 2; 3D (1, 2, 2)), encoder dims
  [48, 128, 256, 512], heads [1, 2, 4, 8], SR [6, 4, 2, 1] (dense), depths [1, 1, 1, 1] / [2, 3, 4, 3];
  decoder dims [256, 128, 48], heads [8, 4, 2], SR [2, 4, 6], depths [1, 1, 1] / [3, 4, 3], CLS carried through.
- ``mitplus`` (UniMiSS+, TPAMI 2024): two-block conv stem [32, 64], encoder dims [128, 256, 320, 320] (the official
  ``embed_dims=[32, 64, 128, 256, 320, 320]`` lists the stem widths first), depths [1, 2, 4, 2], heads [1, 2, 4, 8],
  SR [8, 4, 2, 1] (depthwise), extra conv after every patch embedding, 3D strides [2,2,2],[2,2,2],[1,2,2],[1,2,2];
  decoder dims [320, 256, 128] then conv tail [64, 32], heads [4, 2, 1], SR [2, 4, 8], depths [1, 1, 1], no CLS in
  the decoder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "VARIANTS",
    "VariantConfig",
    "check_input_size",
    "get_variant",
    "stage_grids",
    "tiny_overrides",
    "PRESETS",
    "SMOKE_WIDTHS",
    "total_stride",
    "valid_input_sizes",
]

Stride = tuple[int, ...]


@dataclass(frozen=True)
class VariantConfig:
    """Hyper-parameters of one variant; any field can be overridden by keyword (see :func:`get_variant`)."""

    name: str
    family: str  # "mit" or "mitplus": decides the stem layout and the checkpoint key layout
    stem_channels: tuple[int, ...]
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    sr_ratios: tuple[int, int, int, int]
    mlp_ratios: tuple[float, ...] = (4, 4, 4, 4)
    depthwise_sr: bool = False
    extra_conv: bool = False  # UniMiSS+ ``is_proj1``
    stem_strides3d: tuple[Stride, ...] = ((1, 2, 2),)
    stem_strides2d: tuple[Stride, ...] = ((2, 2),)
    patch_strides3d: tuple[Stride, ...] = ((2, 2, 2),) * 4
    decoder_depths: tuple[int, int, int] = (1, 1, 1)
    decoder_num_heads: tuple[int, int, int] = (8, 4, 2)
    decoder_sr_ratios: tuple[int, int, int] = (2, 4, 6)
    decoder_mlp_ratios: tuple[float, ...] = (4, 4, 4)
    decoder_cls: bool = True
    up_strides3d: tuple[Stride, ...] = ((2, 2, 2),) * 3
    tail_strides3d: tuple[Stride, ...] = ((2, 2, 2),)
    tail_refine: tuple[bool, ...] = (True,)
    img_size2d: tuple[int, int] = (224, 224)
    img_size3d: tuple[int, int, int] = (16, 96, 96)
    in_channels2d: int = 3
    in_channels3d: int = 1
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def decoder_dims(self) -> tuple[int, int, int]:
        # decoder stage k adds the skip of encoder stage 3 - k, so its width is fixed by the encoder
        return (self.embed_dims[2], self.embed_dims[1], self.embed_dims[0])

    @property
    def tail_channels(self) -> tuple[int, ...]:
        return tuple(reversed(self.stem_channels))[: len(self.tail_strides3d)]

    def stem_strides(self, spatial_dims: int) -> tuple[Stride, ...]:
        return self.stem_strides2d if spatial_dims == 2 else self.stem_strides3d

    def patch_strides(self, spatial_dims: int) -> tuple[Stride, ...]:
        return ((2, 2),) * 4 if spatial_dims == 2 else self.patch_strides3d

    def up_strides(self, spatial_dims: int) -> tuple[Stride, ...]:
        return ((2, 2),) * 3 if spatial_dims == 2 else self.up_strides3d

    def tail_strides(self, spatial_dims: int) -> tuple[Stride, ...]:
        return ((2, 2),) * len(self.tail_strides3d) if spatial_dims == 2 else self.tail_strides3d

    def img_size(self, spatial_dims: int) -> tuple[int, ...]:
        return self.img_size2d if spatial_dims == 2 else self.img_size3d

    def in_channels(self, spatial_dims: int) -> int:
        return self.in_channels2d if spatial_dims == 2 else self.in_channels3d


_MIT = dict(
    family="mit",
    stem_channels=(32,),
    embed_dims=(48, 128, 256, 512),
    num_heads=(1, 2, 4, 8),
    sr_ratios=(6, 4, 2, 1),
)

VARIANTS: dict[str, VariantConfig] = {
    "mit_tiny": VariantConfig(name="mit_tiny", depths=(1, 1, 1, 1), decoder_depths=(1, 1, 1), **_MIT),
    "mit_small": VariantConfig(name="mit_small", depths=(2, 3, 4, 3), decoder_depths=(3, 4, 3), **_MIT),
    "mitplus": VariantConfig(
        name="mitplus",
        family="mitplus",
        stem_channels=(32, 64),
        embed_dims=(128, 256, 320, 320),
        depths=(1, 2, 4, 2),
        num_heads=(1, 2, 4, 8),
        sr_ratios=(8, 4, 2, 1),
        depthwise_sr=True,
        extra_conv=True,
        stem_strides3d=((1, 1, 1), (1, 2, 2)),
        stem_strides2d=((1, 1), (2, 2)),
        patch_strides3d=((2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2)),
        decoder_depths=(1, 1, 1),
        decoder_num_heads=(4, 2, 1),
        decoder_sr_ratios=(2, 4, 8),
        decoder_cls=False,
        up_strides3d=((1, 2, 2), (1, 2, 2), (2, 2, 2)),
        tail_strides3d=((2, 2, 2), (1, 2, 2)),
        tail_refine=(True, False),
    ),
}


def _as_tuple(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


#: keyword arguments every network takes beside the :class:`VariantConfig` fields (its dropout rates)
NETWORK_RATES = ("drop_rate", "attn_drop_rate", "drop_path_rate")


def get_variant(variant: str | VariantConfig, preset: str | None = None, **overrides) -> VariantConfig:
    """The configuration of ``variant`` with the named ``preset`` (see :data:`PRESETS`), then ``overrides`` (any
    :class:`VariantConfig` field) applied.

    ``img_size`` may be given as ``img_size2d``/``img_size3d``. Raises ``ValueError`` for an unknown variant, preset
    or key.

    Examples::

        >>> get_variant("mitplus", preset="smoke").embed_dims
        (16, 32, 32, 64)
    """
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)} or leave it unset")
        overrides = {**PRESETS[preset](variant), **overrides}
    cfg = variant if isinstance(variant, VariantConfig) else VARIANTS.get(variant)
    if cfg is None:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    names = {f.name for f in dataclasses.fields(VariantConfig)} - {"name", "family", "extra"}
    unknown = sorted(set(overrides) - names)
    if unknown:
        import difflib

        # the networks take the regularisation rates beside these fields, and a misspelt rate ends up here
        close = difflib.get_close_matches(unknown[0], sorted(names | set(NETWORK_RATES)), n=1)
        raise ValueError(f"unknown variant override(s) {unknown} for {cfg.name!r}"
                         f"{f' (did you mean {close[0]!r}?)' if close else ''}; valid keys: {sorted(names)}, and the "
                         f"networks' {', '.join(NETWORK_RATES)}")
    cfg = dataclasses.replace(cfg, **{k: _as_tuple(v) for k, v in overrides.items()})
    for dim, heads in zip(cfg.embed_dims, cfg.num_heads):
        if dim % heads:
            raise ValueError(f"{cfg.name}: embed_dims {cfg.embed_dims} must be divisible by num_heads {cfg.num_heads}")
    for dim, heads in zip(cfg.decoder_dims, cfg.decoder_num_heads):
        if dim % heads:
            raise ValueError(
                f"{cfg.name}: decoder widths {cfg.decoder_dims} (= embed_dims[2::-1]) must be divisible by "
                f"decoder_num_heads {cfg.decoder_num_heads}"
            )
    return cfg


#: widths of the smoke network, the same for every variant: a few hundred thousand parameters, so a whole bundle
#: runs in about a minute on 2 CPU cores (numbers it produces say nothing about quality)
SMOKE_WIDTHS = {"embed_dims": (16, 32, 32, 64), "num_heads": (1, 2, 2, 4), "decoder_num_heads": (2, 2, 1)}


def tiny_overrides(variant: str | VariantConfig) -> dict:
    """The ``"smoke"`` preset of ``variant``: :data:`SMOKE_WIDTHS` plus the stem (and, for MiT, one block per
    stage) that fit them; MiT and MiT+ shrink differently. Tests, smoke overlays (``preset: smoke``) and the small
    scale of ``label-efficiency`` all use it."""
    if get_variant(variant).family == "mit":
        return {**SMOKE_WIDTHS, "stem_channels": (8,), "depths": (1, 1, 1, 1), "decoder_depths": (1, 1, 1)}
    return {**SMOKE_WIDTHS, "stem_channels": (8, 16)}


#: named size presets of :func:`get_variant`: name -> ``f(variant) -> overrides``
PRESETS = {"smoke": tiny_overrides}


def _cumulative_strides(cfg: VariantConfig, spatial_dims: int) -> list[tuple[int, ...]]:
    """Stride of the input at the output of each encoder stage 1..4."""
    stride = [1] * spatial_dims
    for s in cfg.stem_strides(spatial_dims):
        stride = [a * b for a, b in zip(stride, s)]
    out = []
    for s in cfg.patch_strides(spatial_dims):
        stride = [a * b for a, b in zip(stride, s)]
        out.append(tuple(stride))
    return out


def stage_grids(
    variant: str | VariantConfig, spatial_dims: int, img_size: Sequence[int] | None = None, **overrides
) -> list[tuple[int, ...]]:
    """Patch grid of each encoder stage 1..4 for input ``img_size`` (default: the variant's training size), i.e. the
    grids of the position embeddings an encoder built with that ``img_size`` holds (the decoder's reuse stages 3..1)."""
    cfg = get_variant(variant, **overrides)
    size = [int(s) for s in (cfg.img_size(spatial_dims) if img_size is None else img_size)]
    if len(size) != spatial_dims:
        raise ValueError(f"{cfg.name}: img_size {tuple(size)} is not a {spatial_dims}D size")
    for s in cfg.stem_strides(spatial_dims):
        size = [a // b for a, b in zip(size, s)]
    grids = []
    for s in cfg.patch_strides(spatial_dims):
        size = [a // b for a, b in zip(size, s)]
        grids.append(tuple(size))
    return grids


def total_stride(variant: str | VariantConfig, spatial_dims: int, **overrides) -> tuple[int, ...]:
    """Downsampling factor of the encoder's last stage, per spatial dim."""
    return _cumulative_strides(get_variant(variant, **overrides), spatial_dims)[-1]


def valid_input_sizes(variant: str | VariantConfig, spatial_dims: int, **overrides) -> dict:
    """What input sizes the network accepts: ``{"multiple_of": (...), "min_size": (...)}`` per spatial dim.

    Every size must be a multiple of the total stride, and large enough that each spatial-reduction conv (encoder and
    decoder) sees at least ``sr_ratio`` patches along each dim; the last stage must also keep more than one patch
    in total (its instance norm needs it).
    """
    cfg = get_variant(variant, **overrides)
    cum = _cumulative_strides(cfg, spatial_dims)
    need_per_axis = []
    for a in range(spatial_dims):
        lows = [cum[i][a] * cfg.sr_ratios[i] for i in range(4)]
        lows += [cum[2 - k][a] * cfg.decoder_sr_ratios[k] for k in range(3)]
        step = cum[-1][a]
        need_per_axis.append(int(math.ceil(max(lows + [step]) / step) * step))
    return {"multiple_of": cum[-1], "min_size": tuple(need_per_axis)}


def check_input_size(variant: str | VariantConfig, spatial_dims: int, size: Sequence[int], **overrides) -> None:
    """Raise a ``ValueError`` naming the nearest valid sizes when ``size`` (spatial shape) is not accepted."""
    cfg = get_variant(variant, **overrides)
    valid = valid_input_sizes(cfg, spatial_dims)
    size = tuple(int(s) for s in size)
    if len(size) != spatial_dims:
        raise ValueError(f"{cfg.name}: expected a {spatial_dims}D spatial size, got {size}")
    ok = all(s % m == 0 and s >= lo for s, m, lo in zip(size, valid["multiple_of"], valid["min_size"]))
    if ok and math.prod(s // m for s, m in zip(size, valid["multiple_of"])) < 2:
        # instance norm of the last patch embedding needs more than one position to normalise over
        raise ValueError(
            f"{cfg.name} {spatial_dims}D: input size {size} leaves a single patch at the last stage; use at least "
            f"twice {valid['multiple_of']} along one axis, e.g. {size[:-1] + (2 * valid['multiple_of'][-1],)}"
        )
    if not ok:
        lower = tuple(max(lo, (s // m) * m) for s, m, lo in zip(size, valid["multiple_of"], valid["min_size"]))
        upper = tuple(max(lo, -(-s // m) * m) for s, m, lo in zip(size, valid["multiple_of"], valid["min_size"]))
        nearest = " or ".join(dict.fromkeys(str(t) for t in (lower, upper)))
        raise ValueError(
            f"{cfg.name} {spatial_dims}D: input size {size} is not valid; each size must be a multiple of "
            f"{valid['multiple_of']} and at least {valid['min_size']} (nearest valid: {nearest}); crop or pad, "
            "e.g. with monai.transforms.DivisiblePad"
        )
