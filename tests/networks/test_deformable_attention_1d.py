"""DeformableAttention1d against explicit softmax attention at the sampled points, padding, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch

from unimiss_monai.networks.blocks.deformable_attention_1d import DeformableAttention1d


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    yield


def explicit_attention(attn, x, lengths, shift):
    """Plain loops: query i of sequence b, head h samples p = clamp(i + base_k + shift, 0, n_b - 1); keys and values
    are linearly interpolated between neighbouring tokens; weights softmax(q . k / sqrt(d) + bias_h(p - i))."""
    b, length, c = x.shape
    heads, d = attn.num_heads, attn.head_dim
    q = attn.q(x).view(b, length, heads, d)
    k, v = attn.kv(x).view(b, length, 2, heads, d).unbind(2)
    r = attn.max_relative
    out = torch.zeros(b, length, heads, d)
    for s in range(b):
        n = lengths[s]
        for i in range(n):
            for h in range(heads):
                logits, values = [], []
                for base in range(attn.num_points):
                    p = min(max(i + base - attn.num_points // 2 + shift, 0.0), n - 1.0)
                    lo, f = int(math.floor(p)), p - math.floor(p)
                    hi = min(lo + 1, n - 1)
                    key = (1 - f) * k[s, lo, h] + f * k[s, hi, h]
                    rel = p - i + r
                    rlo, rf = int(math.floor(rel)), rel - math.floor(rel)
                    bias = (1 - rf) * attn.relative_bias[h, rlo] + rf * attn.relative_bias[h, min(rlo + 1, 2 * r)]
                    logits.append(float(q[s, i, h] @ key) / math.sqrt(d) + float(bias))
                    values.append((1 - f) * v[s, lo, h] + f * v[s, hi, h])
                w = torch.softmax(torch.tensor(logits), dim=0)
                out[s, i, h] = sum(wk * vk for wk, vk in zip(w, values))
    y = attn.proj(out.reshape(b, length, c))
    real = torch.arange(length)[None, :, None] < torch.tensor(lengths)[:, None, None]
    return y * real


def padded(lengths, length):
    return torch.arange(length)[None] >= torch.tensor(lengths)[:, None]


def set_shift(attn, shift):
    """Make every learned offset equal ``shift``: offset_range * tanh(bias) with zero weights."""
    with torch.no_grad():
        attn.offset.weight.zero_()
        attn.offset.bias.fill_(math.atanh(shift / attn.offset_range))


@pytest.mark.parametrize("num_points", [3, 4])
def test_zero_offsets_equal_standard_attention_at_the_sampled_points(num_points):
    attn = DeformableAttention1d(8, num_heads=2, num_points=num_points, offset_range=2.0).eval()
    assert attn.offset.weight.abs().sum() == 0  # zero offsets at initialisation
    x, lengths = torch.randn(2, 7, 8), [7, 5]
    with torch.no_grad():
        got = attn(x, padded(lengths, 7))
        expected = explicit_attention(attn, x, lengths, 0.0)
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("shift", [1.0, -1.0, 0.5])
def test_learned_offsets_move_the_sampled_points(shift):
    attn = DeformableAttention1d(8, num_heads=2, num_points=3, offset_range=2.0).eval()
    set_shift(attn, shift)
    x, lengths = torch.randn(2, 6, 8), [6, 4]
    with torch.no_grad():
        got = attn(x, padded(lengths, 6))
        expected = explicit_attention(attn, x, lengths, shift)
        unshifted = explicit_attention(attn, x, lengths, 0.0)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, unshifted, atol=1e-3)


def test_padding_is_never_read_and_outputs_zero():
    attn = DeformableAttention1d(8, num_heads=2, num_points=4).eval()
    set_shift(attn, 1.7)  # push the sampling points towards the end of the sequence
    mask = padded([6, 3], 8)
    x = torch.randn(2, 8, 8)
    y = x.clone()
    y[mask] = torch.randn(int(mask.sum()), 8) * 1e3
    with torch.no_grad():
        a, b = attn(x, mask), attn(y, mask)
    assert torch.equal(a, b)
    assert a[mask].abs().sum() == 0
    # a short volume padded into a longer batch gives what it gives alone
    with torch.no_grad():
        alone = attn(x[1:, :3])
    assert torch.allclose(a[1, :3], alone[0], atol=1e-6)


def test_gradients_reach_every_parameter():
    attn = DeformableAttention1d(8, num_heads=2, num_points=3)
    x = torch.randn(2, 6, 8, requires_grad=True)
    attn(x, padded([6, 4], 6)).pow(2).sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all(), name


def test_bad_input():
    with pytest.raises(ValueError, match="divisible"):
        DeformableAttention1d(10, num_heads=3)
    attn = DeformableAttention1d(8, num_heads=2)
    with pytest.raises(ValueError, match="every position"):
        attn(torch.randn(2, 4, 8), padded([4, 0], 4))
    with pytest.raises(ValueError, match="pad at the end"):
        attn(torch.randn(1, 4, 8), torch.tensor([[True, False, False, False]]))
    with pytest.raises(ValueError, match="bool tensor of shape"):
        attn(torch.randn(1, 4, 8), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\(B, L, C\)"):
        attn(torch.randn(4, 8))


def test_sampling_positions_stay_float32_under_bfloat16_autocast():
    # 32 slices: in bfloat16, positions between 16 and 32 are multiples of 1/8, so small offsets would round away
    torch.manual_seed(0)
    attn = DeformableAttention1d(16, num_heads=2, num_points=3, offset_range=2.0).eval()
    torch.nn.init.normal_(attn.offset.weight, std=0.05)
    x, lengths = torch.randn(2, 32, 16), torch.tensor([32, 32])
    with torch.no_grad():
        exact = attn.sampling_positions(x, lengths)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = attn.sampling_positions(x, lengths)
    assert mixed.dtype == torch.float32
    # only the offset layer's bfloat16 product remains: well under a hundredth of a slice
    assert (mixed - exact).abs().max() < 0.01, float((mixed - exact).abs().max())
