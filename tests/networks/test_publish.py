"""``publish-pretrained``: only valid exports are published, other variants need --force, the previous file is kept,
and the published info says where the weights came from."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
import torch

from unimiss_monai.cli import main
from unimiss_monai.networks import StudentTeacher
from unimiss_monai.networks import DINOHead, build_backbone, tiny_overrides
from unimiss_monai.networks.publish import publish_pretrained


def _export(path, variant="mitplus", smoke=False):
    """A small pretraining export: the smoke preset's widths with ``smoke``, else one stage wider (published without
    --force: weights of the smoke preset are refused, which no fine-tune bundle loads by default)."""
    widths = {} if smoke else {"embed_dims": (16, 32, 48, 64)}
    backbone = build_backbone(variant, (2, 3), img_size={2: (64, 64), 3: (16, 64, 64)},
                              **{**tiny_overrides(variant), **widths})
    exported = StudentTeacher(backbone, DINOHead(backbone.embed_dim, 16)).export()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(exported, path)
    return exported


def test_publish_records_source_and_keeps_previous(tmp_path):
    src, dst = tmp_path / "run1" / "model.pt", tmp_path / "bundle" / "models" / "model.pt"
    first = _export(src)
    start = datetime.now(timezone.utc).replace(microsecond=0)
    result = publish_pretrained(str(src), str(dst))
    published = torch.load(dst, weights_only=True)
    assert result["previous"] is None and not dst.with_name("model.pt.prev").exists()
    assert published["info"]["source"] == {"path": str(src.resolve()), "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    assert start <= datetime.fromisoformat(published["info"]["published"]) <= datetime.now(timezone.utc)
    assert {k: v for k, v in published["info"].items() if k not in ("source", "published")} == first["info"]
    assert all(torch.equal(published["model"][k], v) for k, v in first["model"].items())
    # same variant and shapes: replaced without --force, the previous file kept byte for byte
    before = dst.read_bytes()
    src2 = tmp_path / "run2" / "model.pt"
    _export(src2)
    result = publish_pretrained(str(src2), str(dst), force="false")
    assert dst.with_name("model.pt.prev").read_bytes() == before and result["previous"] == str(dst) + ".prev"
    assert torch.load(dst, weights_only=True)["info"]["source"]["path"] == str(src2.resolve())
    assert not [p.name for p in dst.parent.iterdir() if p.name not in ("model.pt", "model.pt.prev")]  # no temp files
    # a third publish keeps the second model beside the first: no earlier copy is overwritten
    second = dst.read_bytes()
    src3 = tmp_path / "run3" / "model.pt"
    _export(src3)
    result = publish_pretrained(str(src3), str(dst))
    assert result["previous"] == str(dst) + ".prev.2" and dst.with_name("model.pt.prev.2").read_bytes() == second
    assert dst.with_name("model.pt.prev").read_bytes() == before
    # the same export again (with --force too): nothing written, no third copy of the same weights
    third = dst.read_bytes()
    for force in ("false", "true"):
        result = publish_pretrained(str(src3), str(dst), force=force)
        assert result["previous"] is None and dst.read_bytes() == third
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model.pt", "model.pt.prev", "model.pt.prev.2"]


def test_other_variant_needs_force(tmp_path):
    dst = tmp_path / "models" / "model.pt"
    _export(tmp_path / "a.pt", "mitplus")
    publish_pretrained(str(tmp_path / "a.pt"), str(dst))
    before = dst.read_bytes()
    _export(tmp_path / "b.pt", "mit_small")
    for force in (False, "false"):
        with pytest.raises(ValueError) as err:
            publish_pretrained(str(tmp_path / "b.pt"), str(dst), force=force)
        message = str(err.value)
        assert "\n" not in message and str(dst) in message and "variant mitplus -> mit_small" in message
        assert "--force true" in message
    assert dst.read_bytes() == before and not dst.with_name("model.pt.prev").exists()
    # through the command line, with fire's flag parsing
    main(["publish-pretrained", str(tmp_path / "b.pt"), "--dst", str(dst), "--force", "true"])
    assert torch.load(dst, weights_only=True)["info"]["variant"] == "mit_small"
    assert dst.with_name("model.pt.prev").read_bytes() == before


def test_invalid_sources_are_refused(tmp_path):
    dst = tmp_path / "models" / "model.pt"
    exported = _export(tmp_path / "good.pt")
    bad = dict(exported["model"])
    key = "encoder.blocks.1.0.mlp.fc1.weight"
    bad[key] = bad[key].clone()
    bad[key][0, 0] = float("nan")
    torch.save({"model": bad, "info": exported["info"]}, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=rf"nan.pt: tensor {key} holds NaN or Inf"):
        publish_pretrained(str(tmp_path / "nan.pt"), str(dst))
    torch.save({"model": exported["model"]}, tmp_path / "noinfo.pt")
    with pytest.raises(ValueError, match=r"noinfo.pt has no 'info' naming its variant"):
        publish_pretrained(str(tmp_path / "noinfo.pt"), str(dst))
    torch.save({"model": exported["model"], "info": exported["info"], "fn": torch.nn.Linear(1, 1)}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="refused"):
        publish_pretrained(str(tmp_path / "pickled.pt"), str(dst))
    with pytest.raises(ValueError, match="force"):
        publish_pretrained(str(tmp_path / "good.pt"), str(dst), force="maybe")
    with pytest.raises(ValueError, match=rf"^publish-pretrained: source {tmp_path}/gone.pt does not exist; pass the "):
        publish_pretrained(str(tmp_path / "gone.pt"), str(dst))
    assert not dst.exists()


def test_a_fine_tuned_model_is_not_published_as_pretraining(tmp_path, capsys):
    # a fine-tuning bundle's model.pt also has "model" and "info" with a variant
    exported = _export(tmp_path / "export.pt")
    # its info names its bundle and the classes of its head (CheckpointInfo)
    info = {"bundle": "unimiss_cxr_segmentation", "variant": exported["info"]["variant"], "classes": ["lung_left"]}
    tuned = {"model": exported["model"], "info": info}
    torch.save(tuned, tmp_path / "tuned.pt")
    with pytest.raises(ValueError, match="is a trained model of unimiss_cxr_segmentation, not a pretraining export"):
        publish_pretrained(str(tmp_path / "tuned.pt"), str(tmp_path / "dst.pt"))
    assert not (tmp_path / "dst.pt").exists()
    # a released pretraining bundle's weights name theirs, and publish; no recipe is claimed that the file does not record
    released = {"model": exported["model"], "info": {**exported["info"], "bundle": "unimiss_pretraining"}}
    torch.save(released, tmp_path / "released.pt")
    publish_pretrained(str(tmp_path / "released.pt"), str(tmp_path / "dst.pt"))
    assert "recipe" not in capsys.readouterr().out


def test_a_finished_run_folder_is_published_from_its_export(tmp_path, capsys):
    """The fine-tuning bundles take a run's output folder as --pretrained_path; publish-pretrained takes it too."""
    run = tmp_path / "run"
    exported = _export(run / "models" / "model.pt")
    dst = tmp_path / "bundle" / "models" / "model.pt"
    result = publish_pretrained(str(run), str(dst))
    published = torch.load(dst, weights_only=True)
    assert published["info"]["source"]["path"] == str((run / "models" / "model.pt").resolve())
    assert result["variant"] == published["info"]["variant"] == exported["info"]["variant"]
    assert all(torch.equal(published["model"][k], v) for k, v in exported["model"].items())
    assert f"{(run / 'models' / 'model.pt').resolve()} (sha256" in capsys.readouterr().out
    # a run killed before its export, and a folder that is no run: one line naming the folder and the fix
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "checkpoints" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=rf"^publish-pretrained: source '{killed}' is the folder of a pretraining "
                                                r"run that has not finished .* resume it to its end"):
        publish_pretrained(str(killed), str(dst), force=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"^publish-pretrained: source '{empty}' is a folder without "
                                                r"models/model\.pt; pass the output folder of a finished"):
        publish_pretrained(str(empty), str(tmp_path / "other.pt"))
    assert not (tmp_path / "other.pt").exists()


def test_a_converted_official_checkpoint_is_published_with_its_variant(tmp_path):
    """convert-checkpoint stores its variant beside model, with no info; the published file records it in info."""
    from test_convert import official_checkpoint

    from unimiss_monai.networks.convert import convert_checkpoint

    src, converted, dst = tmp_path / "checkpoint.pth", tmp_path / "mit_tiny.pt", tmp_path / "models" / "model.pt"
    torch.save(official_checkpoint("mit_tiny"), src)
    convert_checkpoint(str(src), str(converted), variant="mit_tiny")
    saved = torch.load(converted, weights_only=True)
    assert "info" not in saved and saved["variant"] == "mit_tiny"
    result = publish_pretrained(str(converted), str(dst))
    published = torch.load(dst, weights_only=True)
    assert result["variant"] == published["info"]["variant"] == "mit_tiny" and "variant" not in published
    assert published["info"]["source"]["path"] == str(converted.resolve())
    assert all(torch.equal(published["model"][k], v) for k, v in saved["model"].items())
    # what the fine-tuning bundles load by default: a network of that variant takes every encoder tensor
    net = build_backbone("mit_tiny", (2, 3))
    from unimiss_monai.networks import load_pretrained

    assert not load_pretrained(net, str(dst), strict=True).missing


def test_an_official_checkpoint_is_told_to_be_converted_first(tmp_path):
    """An official training checkpoint ({"epoch", "student", "teacher"}) was told to pass a pretraining export; its
    fix is convert-checkpoint, named with the file, and nothing is published."""
    from test_convert import official_checkpoint

    src, dst = tmp_path / "official_mit_tiny.pth", tmp_path / "pubr" / "model.pt"
    torch.save(official_checkpoint("mit_tiny"), src)
    with pytest.raises(ValueError) as caught:
        publish_pretrained(str(src), str(dst))
    message = str(caught.value)
    assert "\n" not in message and f"{src} is an official UniMiSS/UniMiSS+ training checkpoint" in message
    assert f"convert it first: python -m unimiss_monai convert-checkpoint {src} DST, then publish DST" in message
    assert not dst.exists()


def test_a_folder_given_as_destination_is_refused_before_any_comparison(tmp_path):
    _export(tmp_path / "run" / "model.pt")
    folder = tmp_path / "models"
    folder.mkdir()
    for force in ("false", "true"):  # the same answer either way: no --force can make a folder a file
        with pytest.raises(ValueError, match=rf"--dst {folder} is a folder, not a file: .*--dst {folder / 'model.pt'}"):
            publish_pretrained(str(tmp_path / "run" / "model.pt"), str(folder), force=force)
    assert not any(folder.iterdir())


def test_smoke_size_weights_are_published_only_with_force(tmp_path, capsys):
    """A smoke or demo run's export fits no fine-tune bundle's default configs (their smoke overlays load none):
    refused in one line naming the overlay way to use them; --force publishes them anyway. A fine-tune model built
    at full size is told, in the same words, that these are smoke-size weights."""
    from unimiss_monai.networks import get_variant
    from unimiss_monai.networks.pretrained import check_info

    exported = _export(tmp_path / "my run" / "smoke.pt", smoke=True)  # a path to copy with a space in it
    dst = tmp_path / "models" / "model.pt"
    with pytest.raises(ValueError) as err:
        publish_pretrained(str(tmp_path / "my run" / "smoke.pt"), str(dst))
    message = str(err.value)
    assert "holds smoke-size weights (embed_dims (16, 32, 32, 64)" in message
    assert f"--pretrained_path '{tmp_path / 'my run' / 'smoke.pt'}' and the same overlay" in message
    assert "--force true" in message and "\n" not in message and not dst.exists()
    assert publish_pretrained(str(tmp_path / "my run" / "smoke.pt"), str(dst), force="true")["dst"] == str(dst)
    with pytest.raises(ValueError, match=r"these are smoke-size weights \(a run with smoke.yaml or demo.yaml\): add "
                                         r"this bundle's configs/smoke.yaml"):
        check_info(exported["info"], get_variant("mitplus"))
    with pytest.raises(ValueError, match=r"the model is smoke-size .* drop that overlay"):
        check_info({**exported["info"], **{k: list(getattr(get_variant("mitplus"), k)) for k in ("embed_dims", "num_heads")}},
                   get_variant("mitplus", preset="smoke"))


def test_an_installation_without_bundles_needs_dst(tmp_path, monkeypatch):
    """Installed from a wheel, the package has no bundles beside it: the default target would be in site-packages."""
    from unimiss_monai.utils import repository

    _export(tmp_path / "run.pt")
    monkeypatch.setattr(repository, "REPOSITORY_BUNDLES", tmp_path / "site-packages" / "bundles")
    with pytest.raises(ValueError, match=r"^publish-pretrained: this unimiss_monai has no bundles/ beside it "
                                         r"\(installed from a wheel, .*\); pass --dst <bundles folder>/unimiss_"):
        publish_pretrained(str(tmp_path / "run.pt"))
    assert not (tmp_path / "site-packages").exists()


def test_a_runs_last_line_names_the_step_its_export_takes(tmp_path, caplog, monkeypatch):
    """The pretraining run's last line told a smoke run to publish its export, which publish-pretrained then refused:
    a smoke-size export is pointed at --pretrained_path, as the refusal says; another at publish-pretrained, which
    then takes it."""
    import logging
    import os
    from types import SimpleNamespace

    from unimiss_monai.engines.pretraining import log_export

    smoke, wider = tmp_path / "smoke run" / "model.pt", tmp_path / "run" / "model.pt"
    _export(smoke, smoke=True)
    _export(wider)
    trainer = SimpleNamespace(state=SimpleNamespace(skipped_samples=0, failed_samples=[]))
    with caplog.at_level(logging.INFO, logger="unimiss_monai.engines.pretraining"):
        log_export(trainer, str(smoke))
        log_export(trainer, str(wider))
    smoke_line, wider_line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("exported backbone")]
    assert (f"({smoke}) " not in smoke_line and "smoke-size weights, which publish-pretrained refuses: fine-tune from "
            f"them with --pretrained_path '{smoke}' and the same overlay" in smoke_line), smoke_line
    assert f"publish it with: python -m unimiss_monai publish-pretrained {wider})" in wider_line, wider_line
    # a run's relative export path is said absolute: the command is pasted into another bundle's folder
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="unimiss_monai.engines.pretraining"):
        log_export(trainer, os.path.join("smoke run", "model.pt"))
    assert f"--pretrained_path '{smoke}' and the same overlay" in caplog.records[-1].getMessage()
    publish_pretrained(str(wider), str(tmp_path / "models" / "model.pt"))  # the step named is one that works
    with pytest.raises(ValueError, match="holds smoke-size weights"):
        publish_pretrained(str(smoke), str(tmp_path / "models" / "model.pt"))
