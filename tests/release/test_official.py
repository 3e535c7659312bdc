"""release-official: an official-format checkpoint becomes a pretraining bundle release whose weights load back
unchanged. The official checkpoint is made here from a backbone of this package, renamed to the official key names."""

from __future__ import annotations

import argparse
import hashlib
import re
import zipfile

import pytest
import torch

from unimiss_monai.networks import build_backbone, load_pretrained
from unimiss_monai.networks.convert import official_key_to_ours
from unimiss_monai.release.download import download
from unimiss_monai.release.official import release_official


def to_official(key: str, family: str) -> str:
    """The official name of one of our backbone keys (the inverse of ``official_key_to_ours``)."""
    off, mit = (0, True) if family == "mit" else (1, False)

    def sr(rest):
        return re.sub(r"attn\.sr\.([23])d\.", lambda m: f"attn.sr{m.group(1)}D.", rest)

    rules = [
        (r"encoder\.stem\.([23])d\.0\.0\.(.+)", lambda g: f"transformer.{'patch_embed' if mit else 'ConvBlock'}{g[0]}D0{'' if mit else '.0'}.{g[1]}"),
        (r"encoder\.stem\.([23])d\.1\.(\d)\.(.+)", lambda g: f"transformer.ConvBlock{g[0]}D1.{g[1]}.{g[2]}"),
        (r"encoder\.patch_embeds\.(\d)\.([23])d\.(.+)", lambda g: f"transformer.patch_embed{g[1]}D{int(g[0]) + 1}.{g[2]}"),
        (r"encoder\.pos_embeds\.(\d)\.([23])d\.weight", lambda g: f"transformer.pos_embed{g[1]}D{int(g[0]) + 1}"),
        (r"encoder\.blocks\.(\d)\.(\d+)\.(.+)", lambda g: f"transformer.block{int(g[0]) + 1}.{g[1]}.{sr(g[2])}"),
        (r"encoder\.cls_token", lambda g: "transformer.cls_tokens1"),
        (r"encoder\.cls_proj\.(\d)\.(.+)", lambda g: f"transformer.cls_tokens{int(g[0]) + 2}.{g[1]}"),
        (r"decoder\.up_embeds\.(\d)\.([23])d\.(.+)", lambda g: f"DecEmbed{g[1]}D{int(g[0]) + off}.{g[2]}"),
        (r"decoder\.pos_embeds\.(\d)\.([23])d\.weight", lambda g: f"DecPosEmbed{g[1]}D{int(g[0]) + off}"),
        (r"decoder\.blocks\.(\d)\.(\d+)\.(.+)", lambda g: f"Decblock{int(g[0]) + off}.{g[1]}.{sr(g[2])}"),
        (r"decoder\.norm\.(.+)", lambda g: f"norm.{g[0]}"),
        (r"decoder\.cls_proj\.(\d)\.(.+)", lambda g: f"cls_tokens{g[0]}.{g[1]}"),
        (r"decoder\.tail\.([23])d\.(\d)\.up\.(.+)", lambda g: f"TransposeConv{g[0]}D{int(g[1]) + 1}.{g[2]}"),
        (r"decoder\.tail\.([23])d\.(\d)\.refine\.(.+)", lambda g: f"DeConvBlock{g[0]}D{int(g[1]) + 1}.{g[2]}"),
        (r"recon_head\.([23])d\.(.+)", lambda g: f"recon_conv{g[0]}D.{g[1]}"),
    ]
    for pattern, name in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return name(m.groups())
    raise KeyError(key)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """``(path, our state dict)`` of an official-format UniMiSS (mit_tiny) training checkpoint."""
    torch.manual_seed(0)
    ours = build_backbone("mit_tiny", (2, 3)).state_dict()
    names = {k: to_official(k, "mit") for k in ours}
    assert all(official_key_to_ours(o, "mit") == k for k, o in names.items())  # the renaming is exact
    ckpt = {"student": {f"module.backbone.{names[k]}": v for k, v in ours.items()},
            "teacher": {f"backbone.{names[k]}": v + 1 for k, v in ours.items()},
            "epoch": 200, "args": argparse.Namespace(arch="model_small")}
    path = tmp_path_factory.mktemp("official") / "checkpoint.pth"
    torch.save(ckpt, path)
    return path, ours


def test_official_release_loads_back_unchanged(official, tmp_path):
    src, ours = official
    res = release_official(str(src), variant="mit_tiny", out=str(tmp_path / "dist"))
    again = release_official(str(src), variant="mit_tiny", out=str(tmp_path / "dist2"))
    assert res["sha256"] == again["sha256"]  # reproducible
    got = download(res["name"], index=str(tmp_path / "dist" / "model_info.json"), bundle_dir=str(tmp_path / "b"),
                   cache_dir=str(tmp_path / "cache"), progress=False)
    weights = tmp_path / "b" / "unimiss_pretraining" / "models" / "model.pt"
    payload = torch.load(weights, weights_only=True)
    info = payload["info"]
    assert info["variant"] == "mit_tiny" and info["img_size2d"] == [224, 224] and info["img_size3d"] == [16, 96, 96]
    assert info["source"] == {"official": "UniMiSS (ECCV 2022)", "file": "checkpoint.pth", "branch": "student",
                              "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    assert "UniMiSS (ECCV 2022)" in info["training"] and got["weights"]["variant"] == "mit_tiny"
    net = build_backbone("mit_tiny", (2, 3))
    report = load_pretrained(net, str(tmp_path / "b" / "unimiss_pretraining" / "models" / "model.pt"), strict=True)
    assert not report.missing and not report.resized
    assert all(torch.equal(net.state_dict()[k], v) for k, v in ours.items())
    with zipfile.ZipFile(res["zip"]) as zf:
        assert "unimiss_pretraining/configs/train.json" in zf.namelist()


def test_teacher_branch_and_refusals(official, tmp_path):
    src, ours = official
    res = release_official(str(src), out=str(tmp_path / "t"), branch="teacher", name="unimiss_pretraining_mit_tiny")
    with zipfile.ZipFile(res["zip"]) as zf:
        import io

        model = torch.load(io.BytesIO(zf.read("unimiss_pretraining_mit_tiny/models/model.pt")), weights_only=True)["model"]
    assert all(torch.equal(model[k], v + 1) for k, v in ours.items())  # detected variant, teacher weights
    with pytest.raises(ValueError, match="looks like variant mit_tiny, --variant is mitplus"):
        release_official(str(src), variant="mitplus", out=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="unknown variant 'mit_plus'; choose one of mit_small, mit_tiny, mitplus"):
        release_official(str(src), variant="mit_plus", out=str(tmp_path / "x"))
    # the folder holding the checkpoint was said not to exist
    with pytest.raises(ValueError, match=rf"^release-official: {src.parent} is a folder; pass the official checkpoint"):
        release_official(str(src.parent), out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_non_finite_official_weights_are_refused(official, tmp_path):
    src, _ = official
    ckpt = torch.load(src, weights_only=False)
    key = next(k for k in ckpt["student"] if k.endswith("mlp.fc1.weight"))
    ckpt["student"][key] = torch.full_like(ckpt["student"][key], float("nan"))
    bad = tmp_path / "checkpoint.pth"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match=rf"^release-official: {bad}: the student tensor encoder\.\S+ holds NaN or Inf"):
        release_official(str(bad), variant="mit_tiny", out=str(tmp_path / "dist"))
    assert not (tmp_path / "dist").exists()
