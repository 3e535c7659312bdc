"""Attention, position embeddings and patch embeddings, checked against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unimiss_monai.networks.blocks import PositionEmbedding, SpatialReductionAttention, resize_pos_embed
from unimiss_monai.networks.blocks.attention import patch_reduce


def explicit_sr_attention(attn: SpatialReductionAttention, x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V written out per head, with K, V from the SR-reduced patch tokens + CLS."""
    b, n, c = x.shape
    h = attn.num_heads
    d = c // h
    prefix = n - math.prod(grid)
    kv_in = x
    if attn.sr_ratio > 1:
        conv = attn.sr[f"{len(grid)}d"]
        fmap = x[:, prefix:].permute(0, 2, 1).reshape(b, c, *grid)
        conv_fn = F.conv2d if len(grid) == 2 else F.conv3d
        red = conv_fn(fmap, conv.weight, conv.bias, stride=attn.sr_ratio, groups=conv.groups)
        red = red.reshape(b, c, -1).permute(0, 2, 1)
        kv_in = F.layer_norm(torch.cat([x[:, :prefix], red], 1), (c,), attn.norm.weight, attn.norm.bias, 1e-5)
    q = x @ attn.q.weight.T + (attn.q.bias if attn.q.bias is not None else 0)
    kv = kv_in @ attn.kv.weight.T + (attn.kv.bias if attn.kv.bias is not None else 0)
    k, v = kv[..., :c], kv[..., c:]
    out = torch.zeros_like(q)
    for i in range(h):
        sl = slice(i * d, (i + 1) * d)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d), dim=-1)
        out[..., sl] = w @ v[..., sl]
    return out @ attn.proj.weight.T + attn.proj.bias


@pytest.mark.parametrize("grid", [(8, 12), (4, 6, 8)])
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("prefix", [0, 1])
def test_attention_matches_explicit_reference(grid, depthwise, prefix):
    attn = SpatialReductionAttention(16, 2, (2, 3), sr_ratio=2, depthwise_sr=depthwise, qkv_bias=True).eval()
    x = torch.randn(2, prefix + math.prod(grid), 16)
    expected = explicit_sr_attention(attn, x, grid)
    torch.testing.assert_close(attn(x, grid), expected, atol=1e-5, rtol=1e-4)
    attn.fused = False
    torch.testing.assert_close(attn(x, grid), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("grid, r", [((9, 14), 2), ((7, 9), 3), ((5, 7, 9), 2), ((6, 6, 7), 3)])
@pytest.mark.parametrize("depthwise", [False, True])
def test_patch_reduce_is_the_strided_convolution(grid, r, depthwise):
    """Value and gradients of the per-patch product equal torch's strided convolution (kernel == stride), grids that
    are not whole patches included (the convolution drops the rest)."""
    nd = len(grid)
    conv = (torch.nn.Conv2d if nd == 2 else torch.nn.Conv3d)(6, 6 if depthwise else 5, r, r, groups=6 if depthwise else 1)
    conv = conv.double()
    x = torch.randn(2, math.prod(grid), 6, dtype=torch.float64, requires_grad=True)
    want = conv(x.transpose(1, 2).reshape(2, 6, *grid)).flatten(2).transpose(1, 2)
    got = patch_reduce(x, grid, conv)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(want)
    want_grads = torch.autograd.grad(want, (x, conv.weight, conv.bias), g)
    got_grads = torch.autograd.grad(patch_reduce(x, grid, conv), (x, conv.weight, conv.bias), g)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_patch_reduce_refuses_other_groups():
    with pytest.raises(ValueError, match="groups must be 1 or the 4 channels"):
        patch_reduce(torch.randn(1, 16, 4), (4, 4), torch.nn.Conv2d(4, 4, 2, 2, groups=2))


def test_cpu_autocast_takes_the_explicit_product_and_float32_takes_sdpa(monkeypatch):
    """Under CPU bfloat16 autocast the fused attention computes the explicit product (faster there); in float32 it
    calls SDPA. Both give the reference attention (bfloat16 within its precision)."""
    import unimiss_monai.networks.blocks.attention as module

    calls = []
    original = module.F.scaled_dot_product_attention
    monkeypatch.setattr(module.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or original(*a, **k))
    attn = SpatialReductionAttention(16, 2, (3,), sr_ratio=2, qkv_bias=True).eval()
    x = torch.randn(2, 1 + 4 * 6 * 8, 16)
    expected = explicit_sr_attention(attn, x, (4, 6, 8))
    torch.testing.assert_close(attn(x, (4, 6, 8)), expected, atol=1e-5, rtol=1e-4)
    assert calls == [1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x, (4, 6, 8))
    assert calls == [1] and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)


def test_attention_without_reduction_and_bad_heads():
    attn = SpatialReductionAttention(12, 3, (2,), sr_ratio=1).eval()
    x = torch.randn(1, 1 + 20, 12)
    torch.testing.assert_close(attn(x, (4, 5)), explicit_sr_attention(attn, x, (4, 5)), atol=1e-5, rtol=1e-4)
    assert not hasattr(attn, "sr")
    with pytest.raises(ValueError, match="divisible"):
        SpatialReductionAttention(10, 3)


@pytest.mark.parametrize("grid", [(6, 6), (2, 4, 4)])
def test_pos_embed_identity_at_training_grid(grid):
    pe = PositionEmbedding(8, grid, num_prefix=1)
    assert pe(grid) is pe.weight


def test_pos_embed_resize_is_real_2d_and_3d_interpolation():
    # a linear ramp along W survives trilinear resizing only if the grid is reshaped per axis (not a 1-D zoom)
    d, h, w = 2, 3, 4
    ramp = torch.arange(w, dtype=torch.float32).expand(d, h, w).reshape(1, -1, 1)
    cls = torch.full((1, 1, 1), 7.0)
    out = resize_pos_embed(torch.cat([cls, ramp], 1), (d, h, w), (4, 6, 8), num_prefix=1)
    assert out.shape == (1, 1 + 4 * 6 * 8, 1)
    assert out[0, 0, 0] == 7.0
    grid = out[0, 1:, 0].reshape(4, 6, 8)
    assert torch.allclose(grid[:, 0, :], grid[:, -1, :]) and torch.allclose(grid[0], grid[-1])
    assert torch.all(grid[..., 1:] >= grid[..., :-1])
    expected = F.interpolate(ramp.reshape(1, 1, d, h, w), size=(4, 6, 8), mode="trilinear", align_corners=False)
    torch.testing.assert_close(grid, expected[0, 0])
    # 2D: bicubic on the (H, W) grid; H != W keeps rows and columns apart
    rows = torch.arange(3, dtype=torch.float32)[:, None].expand(3, 5).reshape(1, -1, 1)
    out2 = resize_pos_embed(rows, (3, 5), (6, 10), num_prefix=0)[0, :, 0].reshape(6, 10)
    assert torch.allclose(out2[:, 0], out2[:, -1]) and out2[-1, 0] > out2[0, 0]


@pytest.mark.parametrize("in_channels, conv_dtype", [(1, torch.float32), (3, torch.float32), (8, torch.bfloat16)])
def test_a_stem_reading_the_image_convolves_in_float32_under_cpu_autocast(in_channels, conv_dtype):
    """Under CPU bfloat16 autocast, a convolution of the image itself (at most 3 channels) is computed in float32 and
    handed on in bfloat16; a wider one in bfloat16. Either way the output is the float32 block's to bfloat16
    precision, and the weight gradient reaches the float32 parameter."""
    from unimiss_monai.networks.blocks.conv import ConvNormAct

    torch.manual_seed(0)
    block = ConvNormAct(3, in_channels, 4, kernel_size=3, stride=2, padding=1)
    seen = []
    block.conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.randn(2, in_channels, 6, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert seen == [conv_dtype] and out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert block.conv.weight.grad is not None and block.conv.weight.grad.dtype == torch.float32
    torch.testing.assert_close(out.float(), block(x), atol=0.05, rtol=0.02)
