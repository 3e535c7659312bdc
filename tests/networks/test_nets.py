"""Task networks and backbones: shapes, 2D/3D branch sharing, gradients, precision, export and input errors."""

from __future__ import annotations

import pytest
import torch

from unimiss_monai.networks import (
    MiTPlus,
    UniMissClassifier,
    UniMissSegmentation,
    build_backbone,
    check_input_size,
    tiny_overrides,
    valid_input_sizes,
)

VARIANTS = ["mit_tiny", "mit_small", "mitplus"]
SIZES = {2: [(32, 64), (96, 64)], 3: [(16, 32, 64), (32, 64, 32)]}


def tiny(variant):
    return tiny_overrides(variant)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_segmentation_and_classification_shapes(variant, spatial_dims):
    seg = UniMissSegmentation(spatial_dims, 2, 4, variant=variant, **tiny(variant)).eval()
    cls = UniMissClassifier(spatial_dims, 2, 5, variant=variant, pool="cls+mean", **tiny(variant)).eval()
    with torch.no_grad():
        for size in SIZES[spatial_dims]:
            x = torch.randn(1, 2, *size)
            assert seg(x).shape == (1, 4, *size)
            assert cls(x).shape == (1, 5)


def test_real_size_backbone_forward():
    net = build_backbone("mitplus", (2, 3)).eval()
    assert 42.0e6 < sum(p.numel() for p in net.parameters()) < 42.5e6  # the official MiT+ at 224 / 16x96x96: 42.21 M
    with torch.no_grad():
        recon2, cls2 = net(torch.randn(1, 3, 32, 64))
        feats, cls3 = net.forward_intermediates(torch.randn(1, 1, 16, 32, 32))
    assert recon2.shape == (1, 3, 32, 64) and cls2.shape == cls3.shape == (1, 320)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (32, 16, 32, 32), (64, 16, 16, 16), (128, 8, 8, 8), (256, 4, 4, 4), (320, 4, 2, 2), (320, 4, 1, 1)
    ]


@pytest.mark.parametrize("variant", ["mit_tiny", "mitplus"])
@pytest.mark.parametrize("used", [2, 3])
def test_gradients_reach_used_branch_only_and_blocks_are_shared(variant, used):
    net = build_backbone(variant, (2, 3), **tiny(variant)).train()
    blk = net.encoder.blocks[0][0]
    assert blk.attn.sr["2d"] is not blk.attn.sr["3d"]  # only the reduction convs are per dimensionality
    x = torch.randn(2, 3, 32, 64) if used == 2 else torch.randn(2, 1, 16, 32, 64)
    out = net(x)
    loss = sum(o.pow(2).mean() for o in out) if isinstance(out, tuple) else out.pow(2).mean()
    loss.backward()
    other = "3d" if used == 2 else "2d"
    unused = {n for n, _ in net.named_parameters() if f".{other}." in n or n.endswith(f".{other}")}
    # the filter below names the other branch's parameters: some, but not all, of the network's
    assert unused and len(unused) < len(list(net.parameters())), sorted(unused)[:5]
    assert any(n.startswith("encoder.blocks.") and ".attn.sr." in n for n in unused), sorted(unused)[:5]
    for name, p in net.named_parameters():
        if name in unused:
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_single_dim_model_has_no_other_branch():
    net = UniMissSegmentation(3, 1, 2, **tiny("mitplus"))
    assert not any(".2d" in n for n, _ in net.named_parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_nan_under_autocast(dtype):
    net = UniMissSegmentation(3, 1, 3, deep_supervision=True, **tiny("mitplus")).train()
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = net(x)
    assert out.shape == (1, 1 + 4, 3, 16, 32, 32)
    assert torch.isfinite(out.float()).all()
    out.float().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_deep_supervision_only_in_training():
    net = UniMissSegmentation(2, 1, 3, variant="mit_tiny", deep_supervision=True, **tiny("mit_tiny"))
    x = torch.randn(1, 1, 32, 64)
    assert net.train()(x).shape == (1, 1 + 3, 3, 32, 64)
    main = net.eval()(x)
    assert main.shape == (1, 3, 32, 64)
    torch.testing.assert_close(net.train().eval()(x), main)


def test_gradient_checkpointing_matches():
    net = UniMissClassifier(2, 1, 3, **tiny("mitplus")).train()
    x = torch.randn(2, 1, 32, 64)
    net(x).sum().backward()
    ref = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.set_grad_checkpointing(True)
    net(x).sum().backward()
    for a, p in zip(ref, net.parameters()):
        torch.testing.assert_close(p.grad, a, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("factory", ["seg3d", "cls2d"])
def test_torch_export(factory):
    if factory == "seg3d":
        net, x = UniMissSegmentation(3, 1, 2, **tiny("mitplus")).eval(), torch.randn(1, 1, 16, 32, 32)
    else:
        net, x = UniMissClassifier(2, 1, 3, variant="mit_tiny", **tiny("mit_tiny")).eval(), torch.randn(1, 1, 32, 64)
    exported = torch.export.export(net, (x,))
    torch.testing.assert_close(exported.module()(x), net(x), atol=1e-5, rtol=1e-4)


def test_bad_inputs_raise_clear_errors():
    net = UniMissSegmentation(3, 1, 2, **tiny("mitplus"))
    with pytest.raises(ValueError, match=r"built for 3D"):
        net(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"2 channels, the model expects 1"):
        net(torch.randn(1, 2, 16, 64, 64))
    with pytest.raises(ValueError, match=r"multiple of \(4, 32, 32\).*nearest valid: \(16, 64, 64\) or \(16, 64, 96\)"):
        net(torch.randn(1, 1, 16, 64, 70))
    with pytest.raises(ValueError, match="unknown variant"):
        UniMissClassifier(2, 1, 2, variant="vit")
    with pytest.raises(ValueError, match=r"unknown variant override\(s\) \['embed_dim'\] for 'mitplus' \(did you mean "
                                         r"'embed_dims'\?\)"):
        UniMissClassifier(2, 1, 2, embed_dim=3)
    with pytest.raises(ValueError, match=r"\(did you mean 'drop_path_rate'\?\); valid keys: .*drop_path_rate$"):
        UniMissSegmentation(3, 1, 2, drop_path_rat=0.1)  # a rate is no variant field, but the nearest key all the same
    with pytest.raises(ValueError, match="spatial_dims"):
        UniMissSegmentation(4, 1, 2)


def test_valid_input_sizes():
    assert valid_input_sizes("mitplus", 3) == {"multiple_of": (4, 32, 32), "min_size": (16, 32, 32)}
    assert valid_input_sizes("mit_small", 3) == {"multiple_of": (16, 32, 32), "min_size": (16, 32, 32)}
    assert valid_input_sizes("mitplus", 2)["multiple_of"] == (32, 32)
    check_input_size("mitplus", 3, (16, 96, 96))
    with pytest.raises(ValueError, match="at least"):
        check_input_size("mitplus", 3, (8, 96, 96))
    with pytest.raises(ValueError, match="single patch"):
        check_input_size("mit_tiny", 3, (16, 32, 32))


def test_mitplus_reconstruction_channels_follow_inputs():
    net = MiTPlus(spatial_dims=2, in_channels=1, **tiny("mitplus")).eval()
    recon, cls = net(torch.randn(1, 1, 32, 64))
    assert recon.shape == (1, 1, 32, 64) and cls.shape == (1, 64)
    assert net.no_weight_decay() >= {"encoder.cls_token", "encoder.pos_embeds.0.2d.weight"}


@pytest.mark.parametrize("variant, shape", [("mitplus", (1, 16, 32, 32)), ("mit_small", (3, 64, 64))])
def test_bfloat16_autocast_step_matches_the_float32_step(variant, shape, one_thread):
    """The CPU training step under bfloat16 autocast (the pretraining bundle's ``amp: true``) computes the float32
    step's outputs and gradients to bfloat16 precision: what bench-backbone's bf16 column times is the same step."""
    from unimiss_monai.networks import build_backbone
    from unimiss_monai.networks.variants import tiny_overrides

    torch.manual_seed(0)
    net = build_backbone(variant, (2, 3), **tiny_overrides(variant)).train()
    x = torch.randn(2, *shape)

    def step(amp: bool):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = net(x)
        out = out if isinstance(out, tuple) else (out,)
        loss = sum((o.float() ** 2).mean() for o in out)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        return loss.detach(), grad

    loss32, grad32 = step(False)
    loss16, grad16 = step(True)
    torch.testing.assert_close(loss16, loss32, rtol=3e-2, atol=0)
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.99
