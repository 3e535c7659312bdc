"""Attention rollout: analytic rollouts of hand-made attention, the captured weights against the fused forward, and
maps of the UniMiSS classifier in 2D and 3D."""

from __future__ import annotations

import math

import pytest
import torch

from unimiss_monai.visualize.attention_rollout import attention_rollout, capture_attention, last_stage_blocks, rollout
from unimiss_monai.networks import UniMissClassifier, tiny_overrides
from unimiss_monai.networks.blocks.attention import SpatialReductionAttention


def test_identity_attention_rolls_out_to_identity():
    eye = torch.eye(5).expand(2, 3, 5, 5)  # (B, heads, N, N)
    # no prefix token: the mean row of the identity is uniform
    torch.testing.assert_close(rollout([eye, eye, eye], num_prefix_tokens=0), torch.full((2, 5), 0.2))
    # a CLS token that attends only to itself takes nothing from the patches
    torch.testing.assert_close(rollout([eye, eye], num_prefix_tokens=1), torch.zeros(2, 4))


def test_two_blocks_by_hand():
    # block 1, two heads whose mean is [[.5, .5, 0], [0, 1, 0], [0, .5, .5]]; with the identity, rows renormalised:
    #   [[.75, .25, 0], [0, 1, 0], [0, .25, .75]]
    head_a = torch.eye(3)
    head_b = torch.tensor([[0.0, 1.0, 0.0]] * 3)
    block1 = torch.stack([head_a, head_b])[None]
    # block 2, one head swapping tokens 0 and 2: [[.5, 0, .5], [0, 1, 0], [.5, 0, .5]]
    block2 = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])[None, None]
    # product (block 2) @ (block 1): row 0 = [.375, .25, .375], row 1 = [0, 1, 0], row 2 = [.375, .25, .375]
    torch.testing.assert_close(rollout([block1, block2], num_prefix_tokens=1), torch.tensor([[0.25, 0.375]]))
    torch.testing.assert_close(rollout([block1, block2], num_prefix_tokens=0), torch.tensor([[0.25, 0.5, 0.25]]))
    # head fusion by max: block 1 becomes [[1, 1, 0], [0, 1, 0], [0, 1, 1]] + I, rows renormalised
    torch.testing.assert_close(rollout([block1], num_prefix_tokens=1, head_fusion="max"), torch.tensor([[1 / 3, 0.0]]))


def test_rollout_rejects_bad_input():
    with pytest.raises(ValueError, match="not square"):
        rollout([torch.rand(1, 1, 5, 3).softmax(-1)])
    with pytest.raises(ValueError, match="head_fusion"):
        rollout([torch.eye(3)[None]], head_fusion="median")
    with pytest.raises(ValueError, match="no attention"):
        rollout([])


@pytest.mark.parametrize("grid, sr_ratio", [((4, 4), 1), ((2, 4, 4), 2)])
def test_captured_weights_reproduce_the_fused_forward(grid, sr_ratio):
    """softmax(q k^T) from ``attention_weights`` times v through ``proj`` equals the SDPA forward."""
    attn = SpatialReductionAttention(16, 2, spatial_dims=(len(grid),), sr_ratio=sr_ratio, qkv_bias=True).eval()
    x = torch.randn(2, 1 + math.prod(grid), 16)
    weights = attn.attention_weights(x, grid)
    keys = 1 + math.prod(g // sr_ratio for g in grid)
    assert weights.shape == (2, 2, x.shape[1], keys)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, x.shape[1]))
    v = attn.kv(attn.reduce(x, grid))[..., 16:].reshape(2, keys, 2, 8).transpose(1, 2)
    manual = attn.proj((weights @ v).transpose(1, 2).reshape(x.shape))
    torch.testing.assert_close(attn(x, grid), manual, rtol=1e-5, atol=1e-5)


def _classifier(spatial_dims, size):
    return UniMissClassifier(spatial_dims, 1, 3, img_size=size, **tiny_overrides("mitplus"))


def test_capture_leaves_the_forward_unchanged():
    net = _classifier(2, (64, 64)).eval()
    x = torch.randn(1, 1, 64, 64)
    blocks = last_stage_blocks(net)
    with torch.no_grad():
        plain = net(x)
        with capture_attention(blocks) as records:
            hooked = net(x)
        after = net(x)
    torch.testing.assert_close(hooked, plain)
    torch.testing.assert_close(after, plain)
    assert len(records) == len(blocks) and all(w.shape[-1] == w.shape[-2] for w, _ in records)
    assert all(len(b.attn._forward_pre_hooks) == 0 for b in blocks)


@pytest.mark.parametrize("spatial_dims, size", [(2, (64, 64)), (3, (16, 32, 32))])
def test_classifier_rollout_maps(spatial_dims, size):
    net = _classifier(spatial_dims, size)
    net.train()
    x = torch.randn(2, 1, *size)
    maps = attention_rollout(net, x)
    assert maps.shape == (2, *size) and torch.isfinite(maps).all()
    assert maps.min() >= 0 and torch.allclose(maps.flatten(1).amax(1), torch.ones(2))
    assert net.training  # the mode is restored


@pytest.mark.parametrize("spatial_dims, size", [(2, (64, 64)), (3, (16, 32, 32))])
def test_rollout_map_lands_on_the_attended_token(spatial_dims, size, monkeypatch):
    """Every token attends only to the last patch token: the map peaks over that token's cell of the input."""
    net = _classifier(spatial_dims, size)
    blocks = last_stage_blocks(net)

    def to_last_patch(x, grid):
        n = x.shape[1]
        weights = torch.zeros(x.shape[0], 1, n, n)
        weights[..., n - 1] = 1.0
        return weights

    for blk in blocks:
        monkeypatch.setattr(blk.attn, "attention_weights", to_last_patch)
    maps = attention_rollout(net, torch.randn(1, 1, *size))
    with capture_attention(blocks) as records, torch.no_grad():
        net.eval()(torch.randn(1, 1, *size))
    grid = records[-1][1]
    cell = [s // g for s, g in zip(size, grid)]
    peak = torch.tensor(divmod_nd(int(maps[0].argmax()), size))
    # the last patch token covers the last cell along every axis
    assert all(p >= s - c for p, s, c in zip(peak.tolist(), size, cell)), (peak, grid)
    # the attended token holds the whole patch share: the cell's centre is at the maximum, the first cell at zero
    first = maps[0][tuple(slice(0, max(1, c // 2)) for c in cell)]
    assert float(first.max()) == 0.0


def divmod_nd(index: int, shape) -> tuple[int, ...]:
    out = []
    for s in reversed(shape):
        index, r = divmod(index, s)
        out.append(r)
    return tuple(reversed(out))


def test_non_square_stage_is_refused():
    net = _classifier(2, (64, 64))
    with pytest.raises(ValueError, match="not square"):
        attention_rollout(net, torch.randn(1, 1, 64, 64), blocks=net.encoder.blocks[0])
