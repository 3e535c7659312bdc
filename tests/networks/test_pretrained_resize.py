"""Pretrained weights reach fine-tuning intact: position embeddings resized to any window, variant detection and checks.

A backbone is exported at one input size (``StudentTeacher.export``: weights plus ``info``) and loaded into a task
network built for another; every encoder tensor must load, and every resized embedding must equal an independent
``F.interpolate`` of the original grid with its CLS entry untouched.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from unimiss_monai.networks import StudentTeacher
from unimiss_monai.networks import (
    VARIANTS, DINOHead, UniMissClassifier, UniMissSegmentation, backbone_info, build_backbone, detect_variant,
    load_pretrained, tiny_overrides,
)

# cumulative stride of the input at encoder stages 1..4 (stem, then patch embeddings), from the official strides
STRIDES = {
    ("mitplus", 3): [(2, 4, 4), (4, 8, 8), (4, 16, 16), (4, 32, 32)],
    ("mit_small", 3): [(2, 4, 4), (4, 8, 8), (8, 16, 16), (16, 32, 32)],
    ("mitplus", 2): [(4, 4), (8, 8), (16, 16), (32, 32)],
    ("mit_small", 2): [(4, 4), (8, 8), (16, 16), (32, 32)],
}


def _export(variant, img_size, tmp_path, with_info=True):
    backbone = build_backbone(variant, (2, 3), img_size=img_size, **tiny_overrides(variant))
    exported = StudentTeacher(backbone, DINOHead(backbone.embed_dim, 16)).export()
    path = tmp_path / "model.pt"
    torch.save(exported if with_info else {"model": exported["model"]}, path)
    return exported, path


def _reference(weight, prefix, old, new, mode):
    """Independent resize: CLS rows apart, patch rows as a row-major (*grid, C) array, channels moved first."""
    c = weight.shape[-1]
    grid = weight[0, prefix:].reshape(*old, c).movedim(-1, 0)[None]
    out = F.interpolate(grid, size=new, mode=mode, align_corners=False)[0].movedim(0, -1).reshape(-1, c)
    return torch.cat((weight[0, :prefix], out))[None]


def _check_resized(net, exported, variant, d, old_size, new_size, report):
    grids = lambda size: [tuple(s // t for s, t in zip(size, st)) for st in STRIDES[(variant, d)]]  # noqa: E731
    old, new = grids(old_size), grids(new_size)
    mode = "bicubic" if d == 2 else "trilinear"
    state = net.state_dict()
    names = [(f"encoder.pos_embeds.{i}.{d}d.weight", i, 1) for i in range(4)]
    if hasattr(net, "decoder"):  # decoder stage k works on the grid of encoder stage 2 - k
        names += [(f"decoder.pos_embeds.{k}.{d}d.weight", 2 - k, int(VARIANTS[variant].decoder_cls)) for k in range(3)]
    for key, stage, prefix in names:
        src = exported["model"][key]
        assert src.shape[1] == prefix + math.prod(old[stage]) and state[key].shape[1] == prefix + math.prod(new[stage])
        torch.testing.assert_close(state[key], _reference(src, prefix, old[stage], new[stage], mode))
        assert torch.equal(state[key][:, :prefix], src[:, :prefix])
    assert len(report.resized) == len(names) and report.encoder_resized == 4


@pytest.mark.parametrize("variant", ["mitplus", "mit_small"])
@pytest.mark.parametrize("with_info", [True, False])
def test_3d_position_embeddings_resized_from_ct_pretraining_window(variant, with_info, tmp_path):
    # the pretraining CT window (the variants' default) into the CT segmentation bundle's window; without info the
    # loader assumes the variant's default training size, which this is
    old_size, new_size = (16, 96, 96), (32, 128, 128)
    exported, path = _export(variant, {2: (64, 64), 3: old_size}, tmp_path, with_info)
    net = UniMissSegmentation(3, 1, 4, variant=variant, img_size=new_size, **tiny_overrides(variant))
    report = load_pretrained(net, str(path))
    assert not report.mismatched and not [k for k in report.missing if k.startswith("encoder.")]
    assert report.encoder_loaded == report.encoder_total == sum(1 for k in net.state_dict() if k.startswith("encoder."))
    _check_resized(net, exported, variant, 3, old_size, new_size, report)
    assert report.checkpoint_variant == (variant if with_info else detect_variant(exported["model"]))


@pytest.mark.parametrize("variant", ["mitplus", "mit_small"])
def test_3d_resize_follows_recorded_size_and_anisotropic_grids(variant, tmp_path):
    old_size, new_size = (32, 64, 64), (16, 128, 96)  # neither the default nor the same aspect
    exported, path = _export(variant, {2: (64, 64), 3: old_size}, tmp_path)
    assert exported["info"]["img_size3d"] == list(old_size)
    net = UniMissClassifier(3, 1, 2, variant=variant, img_size=new_size, **tiny_overrides(variant))
    report = load_pretrained(net, str(path))
    assert report.encoder_loaded == report.encoder_total and not report.mismatched
    _check_resized(net, exported, variant, 3, old_size, new_size, report)


@pytest.mark.parametrize("variant", ["mitplus", "mit_small"])
def test_2d_position_embeddings_resized(variant, tmp_path):
    old_size, new_size = (64, 64), (96, 128)
    exported, path = _export(variant, {2: old_size, 3: (16, 64, 64)}, tmp_path)
    net = UniMissSegmentation(2, 3, 4, variant=variant, img_size=new_size, **tiny_overrides(variant))
    report = load_pretrained(net, str(path))
    assert report.encoder_loaded == report.encoder_total and not report.mismatched
    _check_resized(net, exported, variant, 2, old_size, new_size, report)


def test_backbone_info_records_what_the_export_is():
    backbone = build_backbone("mitplus", (2, 3), img_size={2: (64, 64), 3: (16, 64, 96)}, **tiny_overrides("mitplus"))
    info = backbone_info(backbone)
    tiny = tiny_overrides("mitplus")
    assert info == {
        "variant": "mitplus", "family": "mitplus", "embed_dims": list(tiny["embed_dims"]),
        "depths": list(VARIANTS["mitplus"].depths), "num_heads": list(tiny["num_heads"]), "spatial_dims": [2, 3],
        "img_size2d": [64, 64], "img_size3d": [16, 64, 96],
    }
    with pytest.raises(TypeError, match="Linear holds no MiTEncoder"):
        backbone_info(torch.nn.Linear(2, 2))


def _mit_small_depths():
    # tiny widths, but the blocks per stage of mit_small (tiny_overrides alone would give mit_tiny's layout)
    return {**tiny_overrides("mit_small"), "depths": (2, 3, 4, 3), "decoder_depths": (3, 4, 3)}


def test_full_mit_small_segmentation_state_dict_is_mit_small(tmp_path):
    seg = UniMissSegmentation(3, 1, 4, variant="mit_small", **_mit_small_depths())
    # the decoder also has blocks.0-2 (3, 4, 3 deep): only the encoder's may count
    assert detect_variant(seg.state_dict()) == "mit_small"
    assert detect_variant(seg.encoder.state_dict()) == "mit_small"
    assert detect_variant(seg.decoder.state_dict()) is None
    torch.save({"model": seg.state_dict()}, tmp_path / "seg.pt")
    cls = UniMissClassifier(3, 1, 2, variant="mit_small", **_mit_small_depths())
    report = load_pretrained(cls, str(tmp_path / "seg.pt"))
    assert report.checkpoint_variant == "mit_small" and report.encoder_loaded == report.encoder_total
    assert all(torch.equal(cls.state_dict()[k], v) for k, v in seg.state_dict().items() if k.startswith("encoder."))


def test_layout_errors_name_only_registered_variants(tmp_path):
    odd = UniMissClassifier(3, 1, 2, variant="mit_small", **{**tiny_overrides("mit_small"), "depths": (2, 2, 2, 2)})
    torch.save({"model": odd.state_dict()}, tmp_path / "odd.pt")
    model = UniMissClassifier(3, 1, 2, variant="mit_small", **_mit_small_depths())
    with pytest.raises(ValueError) as err:
        load_pretrained(model, str(tmp_path / "odd.pt"))
    message = str(err.value)
    assert "\n" not in message and "odd.pt" in message and "depths (2, 2, 2, 2) (no registered variant)" in message
    named = re.findall(r"variant[= ]'?(\w+)", message)
    assert named and set(named) <= set(VARIANTS), named


def test_info_of_another_variant_or_widths_is_refused(tmp_path):
    _, path = _export("mitplus", {2: (64, 64), 3: (16, 64, 64)}, tmp_path)
    wider = UniMissClassifier(3, 1, 2, variant="mitplus", **{**tiny_overrides("mitplus"), "embed_dims": (16, 32, 64, 64)})
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_pretrained(wider, str(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "embed_dims (16, 32, 32, 64)" in message
    assert "model is mitplus (embed_dims (16, 32, 64, 64)" in message
    assert all(torch.equal(wider.state_dict()[k], v) for k, v in before.items())  # nothing was loaded
    with pytest.raises(ValueError, match=r"weights are mitplus .*model is mit_tiny .*variant='mitplus'"):
        load_pretrained(UniMissClassifier(3, 1, 2, variant="mit_tiny", **tiny_overrides("mit_tiny")), str(path))
    # released weights record the overlays they fit: the fix a bundle user can act on comes first
    released = torch.load(path, weights_only=True)
    released["info"]["overlays"] = ["smoke.yaml"]
    torch.save(released, tmp_path / "released.pt")
    with pytest.raises(ValueError, match=r"weights are mitplus .*; these weights fit their bundle's configs with "
                                         r"smoke\.yaml only: run with that bundle's overlay of the same name added to "
                                         r"--config_file, or choose weights of this size \(in Python: build the model "
                                         r"with variant='mitplus'"):
        load_pretrained(wider, str(tmp_path / "released.pt"))


def test_untrained_encoder_tensors_refused_unless_allowed(tmp_path):
    exported, _ = _export("mitplus", {2: (64, 64), 3: (16, 64, 64)}, tmp_path)
    dropped = ["encoder.blocks.1.0.mlp.fc1.weight", "encoder.blocks.2.3.attn.q.weight", "encoder.cls_token", "encoder.norm"]
    dropped = [k for k in dropped if k in exported["model"]]
    assert len(dropped) == 3
    state = {k: v for k, v in exported["model"].items() if k not in dropped}
    state["encoder.cls_proj.0.weight"] = torch.zeros(5, 5)  # no resizing can fix this one
    torch.save({"model": state, "info": exported["info"]}, tmp_path / "partial.pt")
    net = UniMissSegmentation(3, 1, 4, variant="mitplus", **tiny_overrides("mitplus"))
    with pytest.raises(ValueError) as err:
        load_pretrained(net, str(tmp_path / "partial.pt"))
    message = str(err.value)
    assert "\n" not in message and "partial.pt" in message and "4 of " in message and "and 1 more" in message
    assert "allow_partial=True" in message and all(f"{k} (missing)" in message for k in dropped)
    report = load_pretrained(net, str(tmp_path / "partial.pt"), allow_partial="true")
    assert report.encoder_total - report.encoder_loaded == 4
    assert report.mismatched == ["encoder.cls_proj.0.weight (5, 5)->(32, 16)"]
    assert torch.equal(net.state_dict()["encoder.blocks.0.0.mlp.fc1.weight"], state["encoder.blocks.0.0.mlp.fc1.weight"])


def test_2d_only_export_inflates_the_encoder_not_the_decoder(tmp_path):
    # a 2D MiT segmentation export into the 3D one: the decoder's transposed up-sampling convs (kernel = stride 2 in
    # depth) would get the encoder's "mean over 2" rule and halve their output, so only the encoder is inflated
    kw = tiny_overrides("mit_small")
    seg2 = UniMissSegmentation(2, 1, 2, variant="mit_small", img_size=(64, 64), **kw)
    seg3 = UniMissSegmentation(3, 1, 2, variant="mit_small", img_size=(16, 64, 64), **kw)
    before = {k: v.clone() for k, v in seg3.state_dict().items()}
    report = load_pretrained(seg3, {"model": seg2.state_dict(), "info": backbone_info(seg2)})
    assert report.inflated and all(k.startswith("encoder.") for k in report.inflated)
    assert report.encoder_loaded == report.encoder_total
    assert "decoder.up_embeds.0.3d.proj.weight" in report.not_inflated
    assert any(k.startswith("decoder.tail.3d.") for k in report.not_inflated)
    assert set(report.not_inflated) <= set(report.missing)
    assert f"{len(report.not_inflated)} decoder 3D tensors left random" in report.summary()
    state = seg3.state_dict()
    assert all(torch.equal(state[k], before[k]) for k in report.not_inflated)  # untouched, not half-initialised


def test_stem_inflated_across_input_channels(tmp_path):
    # an RGB 2D encoder into a one-channel 3D network: the stem conv is inflated at 3 channels, then adapted to 1
    from unimiss_monai.networks import MiTEncoder

    torch.manual_seed(0)
    kw = tiny_overrides("mit_tiny")
    e2 = MiTEncoder("mit_tiny", spatial_dims=2, in_channels=3, img_size=[64, 64], **kw).eval()
    export = {"model": e2.state_dict(), "info": backbone_info(e2)}
    clf = UniMissClassifier(3, 1, 2, variant="mit_tiny", img_size=(16, 64, 64), **kw)
    report = load_pretrained(clf, export)
    assert report.encoder_loaded == report.encoder_total
    assert report.adapted == ["encoder.stem.3d.0.0.conv.weight in_channels 3->1"]
    e3 = MiTEncoder("mit_tiny", spatial_dims=3, in_channels=1, img_size=[16, 64, 64], **kw).eval()
    load_pretrained(e3, export)
    # the adapted stem sums the RGB kernels: a grey volume of identical slices is the 2D encoder's grey RGB image
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        maps2 = e2.forward_intermediates(x.repeat(1, 3, 1, 1))[0]
        maps3 = e3.forward_intermediates(x[:, :, None].repeat(1, 1, 16, 1, 1))[0]
    for a, b in zip(maps2, maps3):
        torch.testing.assert_close(b, a.unsqueeze(2).expand_as(b), atol=1e-5, rtol=1e-4)


def test_unrecorded_grid_is_resized_only_when_unambiguous(tmp_path):
    from unimiss_monai.networks.embedding_grid import uniform_rescale

    assert uniform_rescale(16 * 24 * 24, (8, 12, 12)) == (16, 24, 24)  # a uniform rescale of the model's grid
    assert uniform_rescale(12 * 18 * 18, (8, 12, 12)) == (12, 18, 18)  # by a factor of 1.5
    assert uniform_rescale(14 * 14, (28, 28)) == (14, 14)  # and down
    assert uniform_rescale(16 * 24 * 24, (8, 24, 24)) is None  # (9, 32, 32) is closest in aspect, but a guess
    kw = tiny_overrides("mit_small")
    # no info, trained at 32x96x96 (not the default 16x96x96): stage 0's (16, 24, 24) cannot be told from (9, 32, 32)
    _, path = _export("mit_small", {2: (64, 64), 3: (32, 96, 96)}, tmp_path, with_info=False)
    net = UniMissSegmentation(3, 1, 4, variant="mit_small", img_size=(16, 96, 96), **kw)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_pretrained(net, str(path))
    message = str(err.value)
    assert "\n" not in message and "model.pt" in message and "pos_embeds" in message
    assert "with info" in message and "img_size" in message
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    report = load_pretrained(net, str(path), allow_partial=True)
    assert report.encoder_total - report.encoder_loaded == 4 and not report.resized
    assert all("training grid unknown" in m for m in report.mismatched)
    # a uniform rescale (32x128x128 -> 16x64x64) is still resized without info
    exported, path = _export("mit_small", {2: (64, 64), 3: (32, 128, 128)}, tmp_path, with_info=False)
    net = UniMissSegmentation(3, 1, 4, variant="mit_small", img_size=(16, 64, 64), **kw)
    report = load_pretrained(net, str(path))
    assert report.encoder_loaded == report.encoder_total
    _check_resized(net, exported, "mit_small", 3, (32, 128, 128), (16, 64, 64), report)


def test_strict_accepts_strings(tmp_path):
    _, path = _export("mitplus", {2: (64, 64), 3: (16, 64, 64)}, tmp_path)
    net = UniMissClassifier(3, 1, 2, variant="mitplus", img_size=(16, 64, 64), **tiny_overrides("mitplus"))
    report = load_pretrained(net, str(path), strict="false")  # the head is missing: loads unless strict
    assert report.missing and report.encoder_loaded == report.encoder_total
    with pytest.raises(ValueError, match="strict loading failed"):
        load_pretrained(net, str(path), strict="true")
    with pytest.raises(ValueError, match="'strict'"):
        load_pretrained(net, str(path), strict="maybe")


def test_never_trained_dimension_is_set_aside(tmp_path, caplog):
    # an X-ray-only run exports a 3D branch at its random initialisation: a CT network inflates it from the trained 2D
    # branch instead of loading it as pretrained; a CT-only run's 2D branch is refused for an X-ray network
    backbone = build_backbone("mitplus", (2, 3), img_size={2: (64, 64), 3: (16, 64, 64)}, **tiny_overrides("mitplus"))
    pair = StudentTeacher(backbone, DINOHead(backbone.embed_dim, 16))
    pair.trained_dims = [2]
    exported = pair.export()
    assert exported["info"]["trained_dims"] == [2]
    torch.save(exported, tmp_path / "xray_only.pt")
    seg3 = UniMissSegmentation(3, 1, 2, variant="mitplus", img_size=(16, 64, 64), **tiny_overrides("mitplus"))
    caplog.set_level("WARNING", logger="unimiss_monai.networks.pretrained")
    report = load_pretrained(seg3, str(tmp_path / "xray_only.pt"))
    assert report.set_aside and all(".3d" in k for k in report.set_aside) and "never-trained" in report.summary()
    assert report.encoder_loaded == report.encoder_total and report.inflated
    assert "saw no CT" in caplog.text and "inflated from the 2D ones" in caplog.text
    stem2d = exported["model"]["encoder.stem.2d.0.0.conv.weight"]
    stem3d = seg3.state_dict()["encoder.stem.3d.0.0.conv.weight"]
    assert not torch.equal(stem3d, exported["model"]["encoder.stem.3d.0.0.conv.weight"])
    # central-plane inflation of the RGB 2D stem, then its channels summed into the CT's one (mean times 3)
    depth = stem3d.shape[2]
    assert stem2d.shape[1] == 3 and stem3d.shape[1] == 1 and depth % 2
    torch.testing.assert_close(stem3d[:, :, depth // 2], stem2d.sum(1, keepdim=True))
    assert not stem3d[:, :, : depth // 2].any() and not stem3d[:, :, depth // 2 + 1 :].any()
    # the same file without the record loads its 3D tensors as they are, as before the record existed
    torch.save({"model": exported["model"], "info": {k: v for k, v in exported["info"].items() if k != "trained_dims"}},
               tmp_path / "unrecorded.pt")
    load_pretrained(seg3, str(tmp_path / "unrecorded.pt"))
    assert torch.equal(seg3.state_dict()["encoder.stem.3d.0.0.conv.weight"], exported["model"]["encoder.stem.3d.0.0.conv.weight"])
    pair.trained_dims = [3]
    torch.save(pair.export(), tmp_path / "ct_only.pt")
    seg2 = UniMissSegmentation(2, 1, 2, variant="mitplus", img_size=(64, 64), **tiny_overrides("mitplus"))
    with pytest.raises(ValueError, match=r"never trained: its pretraining saw no 2D image .*--allow_partial_pretrained") as err:
        load_pretrained(seg2, str(tmp_path / "ct_only.pt"))
    assert "\n" not in str(err.value) and "ct_only.pt" in str(err.value)
    report = load_pretrained(seg2, str(tmp_path / "ct_only.pt"), allow_partial=True)
    assert report.encoder_loaded < report.encoder_total and all(".2d" in k for k in report.set_aside)


def test_weights_of_other_widths_are_named_as_such(tmp_path):
    # the smoke preset's encoder into a full-size network: same variant and layout, every tensor of another shape
    exported, path = _export("mit_tiny", {2: (64, 64), 3: (16, 64, 64)}, tmp_path)
    torch.save({"model": exported["model"], "info": {"variant": "mit_tiny"}}, path)  # widths not recorded
    with pytest.raises(ValueError, match=r"the weights have other widths \(another size preset or overrides\)"):
        load_pretrained(UniMissClassifier(3, 1, 2, variant="mit_tiny", img_size=(16, 64, 64)), str(path))
