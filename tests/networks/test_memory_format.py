"""Conv weights stored channels-last: every conv of the networks, kept through the module methods a user calls, the
same outputs as the channels-first layout, and the benchmark's official column left channels-first."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from unimiss_monai.networks import UniMissSegmentation, build_backbone
from unimiss_monai.networks.blocks import channels_last_weights

_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def _conv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight for n, m in model.named_modules() if isinstance(m, _CONVS)}


def _telling(w: torch.Tensor) -> bool:
    """Whether the two layouts differ for ``w``: not for one input channel (a CT stem, depthwise) nor a 1x1 kernel."""
    return w.shape[1] > 1 and any(s > 1 for s in w.shape[2:])


def _all_channels_last(model: nn.Module) -> bool:
    weights = _conv_weights(model)
    return bool(weights) and all(w.is_contiguous(memory_format=_FORMATS[w.dim()]) for w in weights.values()) and all(
        not w.is_contiguous() for w in weights.values() if _telling(w))


def _segmentation(spatial_dims: int) -> UniMissSegmentation:
    torch.manual_seed(0)
    size = (16, 32, 32) if spatial_dims == 3 else (64, 64)
    return UniMissSegmentation(spatial_dims, 1, 3, variant="mitplus", img_size=size, deep_supervision=True)


@pytest.mark.parametrize("make", [lambda: build_backbone("mit_small", (2, 3)),
                                  lambda: build_backbone("mitplus", (2, 3)),
                                  lambda: _segmentation(3), lambda: _segmentation(2)])
def test_every_conv_weight_is_stored_channels_last(make):
    model = make()
    assert len(_conv_weights(model)) > 5
    assert _all_channels_last(model)


def test_layout_kept_by_module_methods_and_checkpoints():
    model = _segmentation(3)
    params = list(model.parameters())
    fresh = copy.deepcopy(model)
    assert _all_channels_last(fresh)
    # a checkpoint saved from channels-first weights (an older release, the official code) loads into the layout
    first = {k: v.contiguous() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(first, buf)
    buf.seek(0)
    model.load_state_dict(torch.load(buf, weights_only=True))
    assert _all_channels_last(model) and all(a is b for a, b in zip(params, model.parameters()))
    assert _all_channels_last(model.to(torch.float64).float())
    # and the layout's own checkpoint reads back into a new network with the same values
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    again = _segmentation(3)
    again.load_state_dict(torch.load(buf, weights_only=True))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_same_outputs_and_gradients_as_channels_first(spatial_dims):
    last = _segmentation(spatial_dims).train()
    first = copy.deepcopy(last).to(memory_format=torch.contiguous_format)
    assert not any(w.is_contiguous(memory_format=_FORMATS[w.dim()]) for w in _conv_weights(first).values()
                   if _telling(w))
    torch.manual_seed(1)
    x = torch.randn(2, 1, *((16, 32, 32) if spatial_dims == 3 else (64, 64)))
    outs = []
    for model in (last, first):
        y = model(x)
        y.square().mean().backward()
        outs.append((y.detach(), {n: p.grad for n, p in model.named_parameters()}))
    # the two layouts sum in other orders (other oneDNN kernels): float32 rounding, relative to each tensor's scale,
    # with a floor for gradients that are rounding noise themselves (the decoder's queries see near-uniform attention)
    floor = 1e-6 * max(g.abs().max() for g in outs[1][1].values())
    for name, a, b in [("logits", outs[0][0], outs[1][0])] + [(n, g, outs[1][1][n]) for n, g in outs[0][1].items()]:
        assert (a - b).abs().max() <= 1e-3 * b.abs().max() + floor, name


def test_helper_leaves_other_modules_alone():
    lin, conv1d = nn.Linear(4, 4), nn.Conv1d(3, 4, 3)
    before = (lin.weight.stride(), conv1d.weight.stride())
    for m in (lin, conv1d):
        channels_last_weights(m)
    assert (lin.weight.stride(), conv1d.weight.stride()) == before


def test_benchmark_official_column_keeps_channels_first_weights():
    from unimiss_monai.benchmarks.backbone import _model_and_step

    official, _ = _model_and_step("mit_tiny", "3d", False, "cpu", None)
    ours, _ = _model_and_step("mit_tiny", "3d", True, "cpu", None)
    assert all(w.is_contiguous() for w in _conv_weights(official).values())
    assert _all_channels_last(ours)
