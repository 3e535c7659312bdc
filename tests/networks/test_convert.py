"""Official checkpoint conversion and pretrained loading.

The official code cannot run here, so the official state dicts are rebuilt from its source: every key name and
shape below is read off github.com/YtongXie/UniMiSS-code (files and classes named per block).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from unimiss_monai.networks import (
    UniMissClassifier,
    UniMissSegmentation,
    build_backbone,
    detect_variant,
    get_variant,
    load_pretrained,
    tiny_overrides,
)
from unimiss_monai.networks.convert import convert_checkpoint, convert_official_state_dict


def _conv_block(sd, prefix, cin, cout, k, nd):
    # Pacth_embeds.Conv2dBlock / Conv3dBlock (MiTplus.Conv2dBlock / Conv3dBlock): conv (no bias), norm (IN affine)
    sd[f"{prefix}.conv.weight"] = (cout, cin) + (k,) * nd
    sd[f"{prefix}.norm.weight"] = (cout,)
    sd[f"{prefix}.norm.bias"] = (cout,)


def _block(sd, prefix, dim, sr, D, nd, qkv_bias, depthwise):
    # MiT_encoder.Block / MiTplus.Block: norm1, attn (q, kv, proj, sr2D|sr3D, norm), norm2, mlp (fc1, fc2)
    for n in ("norm1", "norm2"):
        sd[f"{prefix}.{n}.weight"] = sd[f"{prefix}.{n}.bias"] = (dim,)
    sd[f"{prefix}.attn.q.weight"] = (dim, dim)
    sd[f"{prefix}.attn.kv.weight"] = (2 * dim, dim)
    if qkv_bias:
        sd[f"{prefix}.attn.q.bias"], sd[f"{prefix}.attn.kv.bias"] = (dim,), (2 * dim,)
    sd[f"{prefix}.attn.proj.weight"], sd[f"{prefix}.attn.proj.bias"] = (dim, dim), (dim,)
    if sr > 1:
        for d in D:
            sd[f"{prefix}.attn.sr{d}.weight"] = (dim, 1 if depthwise else dim) + (sr,) * nd[d]
            sd[f"{prefix}.attn.sr{d}.bias"] = (dim,)
        sd[f"{prefix}.attn.norm.weight"] = sd[f"{prefix}.attn.norm.bias"] = (dim,)
    sd[f"{prefix}.mlp.fc1.weight"], sd[f"{prefix}.mlp.fc1.bias"] = (4 * dim, dim), (4 * dim,)
    sd[f"{prefix}.mlp.fc2.weight"], sd[f"{prefix}.mlp.fc2.bias"] = (dim, 4 * dim), (dim,)


def official_shapes(variant: str) -> dict[str, tuple]:
    """Key -> shape of the official backbone (modal_type 'MM', img_size2D 224, img_size3D [16, 96, 96])."""
    cfg = get_variant(variant)
    plus = variant == "mitplus"
    D, nd, cin = ("2D", "3D"), {"2D": 2, "3D": 3}, {"2D": 3, "3D": 1}
    E, sd = cfg.embed_dims, {}
    # encoder token grids at the training size, CLS first (pos_embed{D}{k}: num_patches + 1)
    grids = {"2D": [56 * 56 // 4**i for i in range(4)] if plus else [56 * 56 // 4**i for i in range(4)],
             "3D": [8 * 24 * 24, 4 * 12 * 12, 4 * 6 * 6, 4 * 3 * 3] if plus else [8 * 24 * 24, 4 * 12 * 12, 2 * 6 * 6, 1 * 3 * 3]}
    for d in D:
        if plus:  # MiTplus.MiT_encoder: ConvBlock{D}0 = Sequential(Conv block), ConvBlock{D}1 = Sequential(2 blocks)
            _conv_block(sd, f"transformer.ConvBlock{d}0.0", cin[d], 32, 3, nd[d])
            _conv_block(sd, f"transformer.ConvBlock{d}1.0", 32, 64, 3, nd[d])
            _conv_block(sd, f"transformer.ConvBlock{d}1.1", 64, 64, 3, nd[d])
        else:  # MiT_encoder.MiT_encoder: patch_embed{D}0 = Conv block k7
            _conv_block(sd, f"transformer.patch_embed{d}0", cin[d], 32, 7, nd[d])
        prev = 64 if plus else 32
        for k in range(4):  # PatchEmbed{2D,3D}(_en): proj (+ proj1 in UniMiSS+)
            _conv_block(sd, f"transformer.patch_embed{d}{k + 1}.proj", prev, E[k], 3, nd[d])
            if plus:
                _conv_block(sd, f"transformer.patch_embed{d}{k + 1}.proj1", E[k], E[k], 3, nd[d])
            sd[f"transformer.pos_embed{d}{k + 1}"] = (1, grids[d][k] + 1, E[k])
            prev = E[k]
    for k in range(4):
        for j in range(cfg.depths[k]):
            _block(sd, f"transformer.block{k + 1}.{j}", E[k], cfg.sr_ratios[k], D, nd, True, plus)
    sd["transformer.cls_tokens1"] = (1, 1, E[0])
    for k in range(1, 4):
        sd[f"transformer.cls_tokens{k + 1}.weight"], sd[f"transformer.cls_tokens{k + 1}.bias"] = (E[k], E[k - 1]), (E[k],)
    # decoder: MiT.MiT (DecEmbed{D}0..2, cls_tokens0..2) or MiTplus.MiTnet (DecEmbed{D}1..3, conv tail, recon)
    dec, off = cfg.decoder_dims, 1 if plus else 0
    for d in D:
        prev = E[3]
        for k in range(3):  # PatchEmbed{D}(_de): ConvTranspose proj (weight: in, out, *kernel) (+ proj1)
            kernel = (2,) * nd[d] if (d == "2D" or k == 2 or not plus) else (1, 2, 2)
            sd[f"DecEmbed{d}{k + off}.proj.weight"], sd[f"DecEmbed{d}{k + off}.proj.bias"] = (prev, dec[k]) + kernel, (dec[k],)
            if plus:
                _conv_block(sd, f"DecEmbed{d}{k + off}.proj1", dec[k], dec[k], 3, nd[d])
            sd[f"DecPosEmbed{d}{k + off}"] = (1, grids[d][2 - k] + (0 if plus else 1), dec[k])
            prev = dec[k]
        if plus:
            sd[f"TransposeConv{d}1.weight"], sd[f"TransposeConv{d}1.bias"] = (128, 64) + (2,) * nd[d], (64,)
            _conv_block(sd, f"DeConvBlock{d}1", 64, 64, 3, nd[d])
            kernel = (2, 2) if d == "2D" else (1, 2, 2)
            sd[f"TransposeConv{d}2.weight"], sd[f"TransposeConv{d}2.bias"] = (64, 32) + kernel, (32,)
            out = 3 if d == "2D" else 1
            sd[f"recon_conv{d}.weight"], sd[f"recon_conv{d}.bias"] = (out, 32) + (1,) * nd[d], (out,)
    for k in range(3):
        for j in range(cfg.decoder_depths[k]):
            _block(sd, f"Decblock{k + off}.{j}", dec[k], cfg.decoder_sr_ratios[k], D, nd, False, plus)
    sd["norm.weight"] = sd["norm.bias"] = (dec[2],)
    if not plus:
        widths = (E[3],) + dec
        for k in range(3):
            sd[f"cls_tokens{k}.weight"], sd[f"cls_tokens{k}.bias"] = (widths[k + 1], widths[k]), (widths[k + 1],)
    return sd


@functools.lru_cache(maxsize=2)
def official_checkpoint(variant: str) -> dict:
    g = torch.Generator().manual_seed(0)
    backbone = {k: torch.randn(s, generator=g) * 0.05 for k, s in official_shapes(variant).items()}
    # MiT.Head / MiTplus.DINOHead with nn.utils.weight_norm (weight_g, weight_v)
    head = {"mlp.0.weight": torch.randn(16, 8), "mlp.0.bias": torch.zeros(16), "mlp.2.weight": torch.randn(16, 16),
            "mlp.2.bias": torch.zeros(16), "mlp.4.weight": torch.randn(4, 16), "mlp.4.bias": torch.zeros(4),
            "last_layer.weight_g": torch.ones(10, 1), "last_layer.weight_v": torch.randn(10, 4)}
    student = {f"module.backbone.{k}": v for k, v in backbone.items()} | {f"module.head.{k}": v for k, v in head.items()}
    teacher = {f"backbone.{k}": v + 1 for k, v in backbone.items()} | {f"head.{k}": v for k, v in head.items()}
    return {"student": student, "teacher": teacher, "epoch": 3}


@pytest.mark.parametrize("variant", ["mit_tiny", "mitplus"])
def test_every_official_weight_lands(variant):
    ckpt = official_checkpoint(variant)
    sd, head, info = convert_official_state_dict(ckpt, branch="student")
    assert info["variant"] == variant and info["skipped"] == []
    model = build_backbone(variant, (2, 3))
    model.load_state_dict(sd, strict=True)  # no missing, no unexpected, same shapes
    assert len(sd) == len(official_shapes(variant))
    teacher, _, _ = convert_official_state_dict(ckpt, branch="teacher")
    assert all(torch.equal(teacher[k], sd[k] + 1) for k in sd)
    from unimiss_monai.networks import DINOHead

    dino = DINOHead(8, 10, hidden_dim=16, bottleneck_dim=4)
    dino.load_state_dict(head, strict=True)
    v = ckpt["student"]["module.head.last_layer.weight_v"]
    torch.testing.assert_close(dino.last_layer.weight, v / v.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("variant,dim", [("mit_tiny", "2D"), ("mit_tiny", "3D"), ("mitplus", "2D"), ("mitplus", "3D")])
def test_converted_attention_block_matches_reference(variant, dim):
    """Stage-1 attention (SR ratio 6 / 8) of the converted model against softmax(QK^T)V from the official tensors."""
    from unimiss_monai.networks import SpatialReductionAttention

    ckpt = official_checkpoint(variant)
    official = {k[len("module.backbone."):]: v for k, v in ckpt["student"].items() if k.startswith("module.backbone.")}
    sd, _, _ = convert_official_state_dict(ckpt)
    cfg = get_variant(variant)
    attn = SpatialReductionAttention(cfg.embed_dims[0], cfg.num_heads[0], (2, 3), cfg.sr_ratios[0], cfg.depthwise_sr, True)
    prefix = "encoder.blocks.0.0.attn."
    attn.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True)
    attn.eval()
    p = lambda n: official[f"transformer.block1.0.attn.{n}"]  # noqa: E731
    c, heads, sr = attn.q.in_features, attn.num_heads, attn.sr_ratio
    grid = (12, 12) if dim == "2D" else (8, 8, 8)
    x = torch.randn(2, 1 + math.prod(grid), c)
    # official Attention.forward: q from all tokens; kv from [CLS, sr{D}(patches)] after LayerNorm(eps 1e-5)
    fmap = x[:, 1:].transpose(1, 2).reshape(2, c, *grid)
    conv = F.conv2d if dim == "2D" else F.conv3d
    groups = c if variant == "mitplus" else 1
    red = conv(fmap, p(f"sr{dim}.weight"), p(f"sr{dim}.bias"), stride=sr, groups=groups).flatten(2).transpose(1, 2)
    kv_in = F.layer_norm(torch.cat([x[:, :1], red], 1), (c,), p("norm.weight"), p("norm.bias"), 1e-5)
    q = (x @ p("q.weight").T + p("q.bias")).reshape(2, -1, heads, c // heads).transpose(1, 2)
    kv = (kv_in @ p("kv.weight").T + p("kv.bias")).reshape(2, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    w = torch.softmax(q @ kv[0].transpose(-2, -1) * (c // heads) ** -0.5, dim=-1)
    ref = (w @ kv[1]).transpose(1, 2).reshape(2, -1, c) @ p("proj.weight").T + p("proj.bias")
    torch.testing.assert_close(attn(x, grid), ref, atol=1e-4, rtol=1e-4)


def test_convert_cli_writes_loadable_file(tmp_path):
    src, dst = tmp_path / "checkpoint.pth", tmp_path / "out" / "mit_tiny.pt"
    torch.save(official_checkpoint("mit_tiny"), src)
    report = convert_checkpoint(str(src), str(dst), variant="mit_tiny", branch="teacher", dims=3)
    assert report["missing"] == [] and report["unexpected"] == [] and report["shape_mismatch"] == []
    assert not any("2d" in k for k in torch.load(dst, weights_only=True)["model"])
    net = UniMissSegmentation(3, 1, 5, variant="mit_tiny", pretrained=str(dst))
    saved = torch.load(dst, weights_only=True)["model"]
    state = net.state_dict()
    assert len(saved) > 50 and all(torch.equal(state[k], v) for k, v in saved.items())
    with pytest.raises(ValueError, match="looks like variant mit_tiny"):
        convert_checkpoint(str(src), str(tmp_path / "other.pt"), variant="mitplus")
    assert not (tmp_path / "other.pt").exists()
    with pytest.raises(ValueError, match=r"is a folder; give the official checkpoint file in it"):
        convert_checkpoint(str(tmp_path), str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match=r"nope.pth' does not exist"):
        convert_checkpoint(str(tmp_path / "nope.pth"), str(tmp_path / "other.pt"))


def test_load_pretrained_report_resize_and_variant_guard(tmp_path):
    backbone = build_backbone("mitplus", (2, 3), img_size={2: (96, 96), 3: (16, 96, 96)}, **tiny_overrides("mitplus"))
    path = tmp_path / "pretrain.pt"
    torch.save({"model": backbone.state_dict()}, path)
    net = UniMissSegmentation(2, 3, 4, variant="mitplus", **tiny_overrides("mitplus"))  # 224 x 224 embeddings
    report = load_pretrained(net, str(path))
    assert detect_variant(backbone.state_dict()) == report.checkpoint_variant == "mitplus"
    assert len(report.resized) == 4 + 3  # encoder and decoder 2D embeddings: 24x24 grid etc. -> 56x56 grid
    assert not report.mismatched and all(k.startswith(("head.",)) for k in report.missing)
    assert any(k.startswith("encoder.stem.3d") for k in report.unexpected)
    torch.testing.assert_close(net.encoder.blocks[1][0].mlp.fc1.weight, backbone.encoder.blocks[1][0].mlp.fc1.weight)
    # a 1-channel model takes the RGB stem conv averaged over channels
    cls = UniMissClassifier(2, 1, 2, variant="mitplus", **tiny_overrides("mitplus"))
    rep = load_pretrained(cls, str(path))
    assert len(rep.adapted) == 1
    w = backbone.encoder.stem["2d"][0][0].conv.weight
    torch.testing.assert_close(cls.encoder.stem["2d"][0][0].conv.weight, w.sum(1, keepdim=True))
    with pytest.raises(ValueError, match="checkpoint looks like variant mitplus, model is mit_tiny"):
        load_pretrained(UniMissClassifier(2, 3, 2, variant="mit_tiny", **tiny_overrides("mit_tiny")), str(path))
    with pytest.raises(ValueError, match="convert it first"):
        load_pretrained(cls, official_checkpoint("mitplus"))
    with pytest.raises(ValueError, match="does not exist"):
        load_pretrained(cls, str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="strict"):
        load_pretrained(net, str(path), strict=True)


def test_convert_reads_official_args_and_refuses_other_objects(tmp_path):
    """Official files pickle the training script's ``argparse`` arguments: those are read, any other object (here a
    ``Path`` inside the arguments) is refused by name and nothing is written."""
    import argparse
    from pathlib import Path

    from unimiss_monai.utils import UnsafeCheckpointError

    src, dst = tmp_path / "checkpoint.pth", tmp_path / "mit_tiny.pt"
    args = argparse.Namespace(arch="mit_tiny", lr=5e-4, out_dim=10, local_crops_scale=(0.05, 0.4), data_path="/data")
    torch.save({**official_checkpoint("mit_tiny"), "args": args}, src)
    report = convert_checkpoint(str(src), str(dst), branch="student")
    assert report["variant"] == "mit_tiny" and report["missing"] == [] and dst.exists()

    dst.unlink()
    torch.save({**official_checkpoint("mit_tiny"), "args": argparse.Namespace(data_path=Path("/data"))}, src)
    with pytest.raises(UnsafeCheckpointError, match=r"^convert-checkpoint: source .* holds pathlib\.[\w.]*Path, which is refused"):
        convert_checkpoint(str(src), str(dst))
    assert not dst.exists()


def test_convert_never_replaces_a_file_unasked_nor_its_source(tmp_path):
    """An existing DST (a user's file) is replaced only with force; DST == SRC (also through a link) never is."""
    src = tmp_path / "checkpoint.pth"
    torch.save(official_checkpoint("mit_tiny"), src)
    original = src.read_bytes()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(FileExistsError, match=rf"^convert-checkpoint: DST {notes} exists and is not replaced: pass "
                                              r"--force true to replace it"):
        convert_checkpoint(str(src), str(notes))
    assert notes.read_text() == "my notes"
    link = tmp_path / "link.pth"
    link.symlink_to(src)
    for dst in (src, link, tmp_path / "." / "checkpoint.pth"):
        with pytest.raises(ValueError, match=rf"^convert-checkpoint: DST {dst} is the source checkpoint"):
            convert_checkpoint(str(src), str(dst), force=True)
    assert src.read_bytes() == original and link.is_symlink()
    with pytest.raises(FileExistsError, match=rf"^convert-checkpoint: DST {tmp_path} is a folder, not a file"):
        convert_checkpoint(str(src), str(tmp_path))
    report = convert_checkpoint(str(src), str(notes), force="true")
    assert report["missing"] == [] and "model" in torch.load(notes, weights_only=True)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # written through a temporary, renamed


@pytest.mark.parametrize("damage, match", [
    ("missing", r"does not convert cleanly to mit_tiny \(\d+ missing \(e\.g\. encoder\.blocks\.3\.0\.[\w.]+, .*\)\); "
                r"nothing was written: check --variant and --dims$"),
    ("nan", r"the student tensor model\.encoder\.blocks\.0\.0\.mlp\.fc1\.weight holds NaN or Inf; nothing was written"),
    ("inf_head", r"the student tensor head\.mlp\.0\.weight holds NaN or Inf"),
])
def test_convert_refuses_incomplete_or_non_finite_weights(tmp_path, damage, match):
    ckpt = official_checkpoint("mit_tiny")
    student = dict(ckpt["student"])
    if damage == "missing":  # the last encoder stage lost
        student = {k: v for k, v in student.items() if ".block4." not in k}
    elif damage == "nan":
        student["module.backbone.transformer.block1.0.mlp.fc1.weight"] = ckpt["student"][
            "module.backbone.transformer.block1.0.mlp.fc1.weight"].clone().fill_(float("nan"))
    else:
        student["module.head.mlp.0.weight"] = torch.full((16, 8), float("inf"))
    src, dst = tmp_path / "checkpoint.pth", tmp_path / "out.pt"
    torch.save({**ckpt, "student": student}, src)
    with pytest.raises(ValueError, match=match) as err:
        convert_checkpoint(str(src), str(dst), variant="mit_tiny")
    assert "\n" not in str(err.value) and not dst.exists() and sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_a_refused_write_prints_no_line_saying_it_was_written(tmp_path, monkeypatch, capsys):
    """The report named DST as written ("-> DST") before the write, which a full disk then refused."""
    import errno

    import unimiss_monai.networks.convert as convert

    def full(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    src, dst = tmp_path / "checkpoint.pth", tmp_path / "out.pt"
    torch.save(official_checkpoint("mit_tiny"), src)
    monkeypatch.setattr(convert, "save_torch", full)
    with pytest.raises(OSError, match="No space left"):
        convert_checkpoint(str(src), str(dst), variant="mit_tiny")
    assert capsys.readouterr().out == ""
    monkeypatch.undo()
    convert_checkpoint(str(src), str(dst), variant="mit_tiny")
    assert capsys.readouterr().out.startswith(f"convert-checkpoint: {src} [student] -> {dst}: variant mit_tiny")


def test_convert_command_fails_in_one_line(tmp_path):
    """Through ``python -m unimiss_monai``: a wrong --dims stops with one line (not a KeyError traceback) and exit 1;
    --force is read as a boolean (``false`` keeps the file)."""
    import subprocess
    import sys

    src, dst = tmp_path / "checkpoint.pth", tmp_path / "mine.pt"
    torch.save(official_checkpoint("mit_tiny"), src)
    dst.write_text("keep")
    env = {**__import__("os").environ, "UNIMISS_TRACEBACK": "0"}
    for args, message in [
        ([str(src), str(tmp_path / "new.pt"), "--dims", "5"], "convert-checkpoint: --dims is 5; choose 2, 3 or both"),
        ([str(src), str(dst), "--force", "false"], f"convert-checkpoint: DST {dst} exists and is not replaced: pass "
                                                   "--force true"),
    ]:
        done = subprocess.run([sys.executable, "-m", "unimiss_monai", "convert-checkpoint", *args], capture_output=True,
                              text=True, timeout=300, env=env)
        assert done.returncode == 1, done.stderr[-2000:]
        lines = done.stderr.strip().splitlines()
        assert lines[0].startswith(f"error: {message}") and len(lines) == 2 and "Traceback" not in done.stderr
    assert dst.read_text() == "keep" and not (tmp_path / "new.pt").exists()
