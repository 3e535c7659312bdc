"""ImageVolumeNet / SliceEncoder / InterSliceTransformer: both 2D backbones, shapes, padding, masking, gradients."""

from __future__ import annotations

import pytest
import torch

from unimiss_monai.losses.masked_embedding import MaskedEmbeddingLoss, random_token_mask
from unimiss_monai.networks.nets.image_volume import ImageVolumeNet, pad_slice_sequences
from unimiss_monai.networks.nets.inter_slice_transformer import InterSliceTransformer
from unimiss_monai.networks.nets.slice_encoder import SliceEncoder
from unimiss_monai.networks.variants import tiny_overrides

# tiny 2D backbones: a one-block-per-stage MONAI ResNet and the shrunken MiT 2D branch
BACKBONES = {
    "resnet": {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [4, 8, 8, 16]},
    "mit_tiny": tiny_overrides("mit_tiny"),
}
SLICE = (32, 64)  # (X, Y): a valid size for both


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    yield


def tiny_net(backbone, **kwargs):
    return ImageVolumeNet(backbone, in_channels=1, d_model=16, depth=2, num_heads=2, num_points=3,
                          backbone_kwargs=BACKBONES[backbone], **kwargs)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_slice_encoder_backbones(backbone):
    enc = SliceEncoder(backbone, in_channels=1, d_model=12, backbone_kwargs=BACKBONES[backbone]).eval()
    with torch.no_grad():
        feats = enc.forward_intermediates(torch.randn(3, 1, *SLICE))
        emb = enc(torch.randn(3, 1, *SLICE))
    assert emb.shape == (3, 12)
    assert [f.shape[1] for f in feats] == enc.feature_widths and len(feats) == 4
    assert feats[0].shape[-1] > feats[-1].shape[-1]  # finest first
    expected = "MiTEncoder" if backbone.startswith("mit") else "ResNet"
    assert type(enc.backbone).__name__ == expected


def test_resnet50_default_is_the_monai_2d_resnet():
    enc = SliceEncoder("resnet50", in_channels=1, d_model=8)
    assert enc.feature_widths == [256, 512, 1024, 2048]
    assert enc.backbone.conv1.stride == (2, 2) and isinstance(enc.backbone.conv1, torch.nn.Conv2d)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_gradients_reach_every_parameter(backbone):
    net = tiny_net(backbone).train()
    vols = [torch.randn(1, 5, *SLICE), torch.randn(1, 3, *SLICE)]
    padding = pad_slice_sequences(vols)[1]
    token_mask = random_token_mask(padding, 0.3, generator=torch.Generator().manual_seed(0))
    out = net(vols, token_mask=token_mask)
    assert out["volume"].shape == (2, 16) and out["tokens"].shape == out["predicted"].shape == (2, 5, 16)
    loss = out["volume"].pow(2).sum() + MaskedEmbeddingLoss(detach_target=False)(
        out["predicted"], out["slice_embeddings"], token_mask
    )
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_padded_batch_equals_each_volume_alone(backbone):
    net = tiny_net(backbone, sequence_length=6).eval()
    vols = [torch.randn(1, 6, *SLICE), torch.randn(1, 2, *SLICE)]
    with torch.no_grad():
        out = net(vols)
        alone = [net(v[None]) for v in vols]
    assert out["key_padding_mask"].tolist() == [[False] * 6, [False, False] + [True] * 4]
    for i, single in enumerate(alone):
        n = vols[i].shape[1]
        assert torch.allclose(out["volume"][i], single["volume"][0], atol=1e-5)
        assert torch.allclose(out["tokens"][i, :n], single["tokens"][0], atol=1e-5)
    assert out["tokens"][1, 2:].abs().sum() == 0 and out["slice_embeddings"][1, 2:].abs().sum() == 0


def test_pad_slice_sequences():
    batch, mask = pad_slice_sequences([torch.ones(2, 3, 4, 5), torch.ones(2, 1, 4, 5)], sequence_length=4)
    assert batch.shape == (2, 2, 4, 4, 5)
    assert mask.tolist() == [[False, False, False, True], [False, True, True, True]]
    assert batch[0, :, :3].eq(1).all() and batch[0, :, 3:].eq(0).all() and batch[1, :, 1:].eq(0).all()
    with pytest.raises(ValueError, match="more than sequence_length=2"):
        pad_slice_sequences([torch.ones(1, 3, 4, 4)], sequence_length=2)
    with pytest.raises(ValueError, match="one C, X, Y"):
        pad_slice_sequences([torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 5)])
    with pytest.raises(ValueError, match="no slice"):
        pad_slice_sequences([torch.ones(1, 0, 4, 4)])


def test_mask_token_replaces_the_masked_slices():
    agg = InterSliceTransformer(d_model=8, depth=1, num_heads=2, num_points=3).eval()
    tokens = torch.randn(1, 5, 8)
    token_mask = torch.tensor([[False, True, False, False, False]])
    changed = tokens.clone()
    changed[0, 1] = torch.randn(8) * 100
    with torch.no_grad():
        a, _ = agg(tokens, token_mask=token_mask)
        b, _ = agg(changed, token_mask=token_mask)
        c, _ = agg(changed)
    assert torch.equal(a, b)  # the masked slice's own embedding is hidden from the transformer
    assert not torch.allclose(a, c)


def test_bad_input():
    net = tiny_net("resnet")
    with pytest.raises(ValueError, match="every position"):
        net(torch.randn(2, 1, 3, *SLICE), key_padding_mask=torch.tensor([[False] * 3, [True] * 3]))
    with pytest.raises(ValueError, match="network order"):
        net(torch.randn(2, 1, *SLICE))
    with pytest.raises(ValueError, match="expected 2D images"):
        net.encode_images(torch.randn(2, 1, 3, *SLICE))
    with pytest.raises(ValueError, match="unknown backbone"):
        SliceEncoder("vit_b16")
    agg = InterSliceTransformer(d_model=8, depth=1, num_heads=2)
    padding = torch.tensor([[False, False, True]])
    with pytest.raises(ValueError, match="marks padded positions"):
        agg(torch.randn(1, 3, 8), padding, token_mask=torch.tensor([[False, False, True]]))
