"""The pretraining export (``StudentTeacher.export`` through ``TrainingCheckpoint``) and its load in ``initialize``
(``load_pretrained_init``): info recorded, one log line, untrained encoder tensors refused unless allowed."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine

from unimiss_monai.networks import StudentTeacher
from unimiss_monai.handlers import TrainingCheckpoint, load_pretrained_init
from unimiss_monai.networks import DINOHead, UniMissSegmentation, backbone_info, build_backbone, tiny_overrides


def _student_teacher():
    backbone = build_backbone("mit_small", (2, 3), img_size={2: (64, 64), 3: (16, 64, 64)}, **tiny_overrides("mit_small"))
    return StudentTeacher(backbone, DINOHead(backbone.embed_dim, 16))


def _run_export(tmp_path, export_fn, objects):
    engine = Engine(lambda e, b: None)
    engine.state.rank = 0
    TrainingCheckpoint(tmp_path / "ckpt", objects, save_every=0, export_path=tmp_path / "model.pt", export_fn=export_fn).attach(engine)
    engine.run(range(1), max_epochs=1)
    return torch.load(tmp_path / "model.pt", weights_only=True)


def test_training_checkpoint_saves_the_export_with_info(tmp_path):
    st = _student_teacher()
    saved = _run_export(tmp_path, st.export, {"network": st})
    assert sorted(saved) == ["info", "model"] and saved["info"] == backbone_info(st.teacher.backbone)
    teacher = st.teacher.backbone.state_dict()
    assert saved["model"].keys() == teacher.keys() and all(torch.equal(saved["model"][k], teacher[k]) for k in teacher)
    # a plain state dict is still wrapped as {"model": ...}
    linear = torch.nn.Linear(3, 2)
    plain = _run_export(tmp_path / "plain", linear.state_dict, {"model": linear})
    assert sorted(plain) == ["model"] and torch.equal(plain["model"]["weight"], linear.weight)


def test_an_export_keeps_the_file_it_replaces_and_rewrites_nothing_it_holds_already(tmp_path):
    st = _student_teacher()
    (tmp_path / "model.pt").write_text("weights of the user's")  # e.g. a downloaded bundle folder as --output_dir
    _run_export(tmp_path, st.export, {"network": st})
    assert (tmp_path / "model.pt.prev").read_text() == "weights of the user's"
    exported = (tmp_path / "model.pt").read_bytes()
    before = (tmp_path / "model.pt").stat().st_mtime_ns
    _run_export(tmp_path, st.export, {"network": st})  # the same weights again: the file is left as it was
    assert (tmp_path / "model.pt").read_bytes() == exported and (tmp_path / "model.pt").stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.glob("model.pt*")) == ["model.pt", "model.pt.prev"]
    import shutil

    shutil.rmtree(tmp_path / "ckpt")  # a new run (a finished checkpoint would be loaded back into the network)
    with torch.no_grad():
        next(st.teacher.backbone.parameters()).add_(1.0)  # other weights: the earlier export is kept beside
    _run_export(tmp_path, st.export, {"network": st})
    assert (tmp_path / "model.pt.prev.2").read_bytes() == exported and (tmp_path / "model.pt").read_bytes() != exported


def test_bundle_load_reports_one_line_and_resizes(tmp_path, caplog):
    st = _student_teacher()
    _run_export(tmp_path, st.export, {"network": st})
    net = UniMissSegmentation(3, 1, 3, variant="mit_small", img_size=(32, 128, 128), **tiny_overrides("mit_small"))
    with caplog.at_level(logging.INFO, logger="unimiss_monai.networks.pretrained"):
        report = load_pretrained_init(net, tmp_path / "model.pt")
    n_encoder = sum(1 for k in net.state_dict() if k.startswith("encoder."))
    assert report["variant"] == "mit_small" and report["encoder_loaded"] == n_encoder and report["encoder_resized"] == 4
    lines = [r.getMessage() for r in caplog.records if r.name == "unimiss_monai.networks.pretrained"]
    assert lines == [
        f"pretrained {tmp_path / 'model.pt'}: variant mit_small (from info), {n_encoder}/{n_encoder} encoder tensors "
        "loaded (4 of them resized)"
    ]


def test_bundle_load_refuses_untrained_encoder_tensors_unless_allowed(tmp_path):
    st = _student_teacher()
    exported = st.export()
    missing = ["encoder.blocks.3.0.attn.kv.weight", "encoder.patch_embeds.2.3d.proj.conv.weight"]
    state = {k: v for k, v in exported["model"].items() if k not in missing}
    path = tmp_path / "partial.pt"
    torch.save({"model": state, "info": exported["info"]}, path)
    net = UniMissSegmentation(3, 1, 3, variant="mit_small", img_size=(16, 64, 64), **tiny_overrides("mit_small"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for allow in (False, "false"):
        with pytest.raises(ValueError) as err:
            load_pretrained_init(net, path, allow_partial=allow)
        message = str(err.value)
        assert "\n" not in message and str(path) in message and "2 of " in message and "allow_partial=True" in message
        assert all(f"{k} (missing)" in message for k in missing)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())  # refused before loading anything
    report = load_pretrained_init(net, path, allow_partial="true")
    assert report["encoder_loaded"] == sum(1 for k in net.state_dict() if k.startswith("encoder.")) - 2
    assert torch.equal(net.state_dict()["encoder.blocks.0.0.attn.q.weight"], state["encoder.blocks.0.0.attn.q.weight"])
    with pytest.raises(ValueError, match="'allow_partial'"):
        load_pretrained_init(net, path, allow_partial="maybe")


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
        self.head = torch.nn.Linear(4, 2)


def test_other_networks_missing_encoder_tensors_refused_unless_allowed(tmp_path):
    state = _Net().encoder.state_dict()
    state.pop("1.bias")
    torch.save({"model": state}, tmp_path / "enc.pt")
    with pytest.raises(ValueError, match=r"enc.pt would leave 1 encoder tensors of _Net untrained: 1.bias;"):
        load_pretrained_init(_Net(), tmp_path / "enc.pt")
    report = load_pretrained_init(_Net(), tmp_path / "enc.pt", allow_partial=True)
    assert report["target"] == "network.encoder" and report["missing"] == ["1.bias"]


def test_strict_load_refuses_a_backbone_only_checkpoint_for_a_whole_unimiss_network(tmp_path):
    """Evaluation and inference load with ``strict``: a pretraining export (encoder only) would leave the decoder
    random, so it is refused; the whole fine-tuned network's own weights load. ``strict`` given as a string parses."""
    st = _student_teacher()
    _run_export(tmp_path, st.export, {"network": st})
    kw = dict(variant="mit_small", img_size=(16, 64, 64), **tiny_overrides("mit_small"))
    net = UniMissSegmentation(3, 1, 3, **kw)
    with pytest.raises(ValueError, match=r"strict loading failed.*missing"):
        load_pretrained_init(net, tmp_path / "model.pt", strict="true")
    assert load_pretrained_init(net, tmp_path / "model.pt", strict="false")["loaded"] > 0  # fine-tuning's init
    trained = UniMissSegmentation(3, 1, 3, **kw)
    torch.save({"model": trained.state_dict()}, tmp_path / "finetuned.pt")
    report = load_pretrained_init(net, tmp_path / "finetuned.pt", strict=True)
    assert report["missing"] == [] and all(torch.equal(v, trained.state_dict()[k]) for k, v in net.state_dict().items())


def test_a_trained_model_is_refused_with_the_fix_for_a_trained_model(tmp_path):
    # evaluation and inference load the bundle's own trained model: a missing file asks for a training, not for the
    # pretraining bundle, and a model of the smoke widths names the overlay it was trained with
    net = UniMissSegmentation(3, 1, 3, variant="mit_small", img_size=(16, 64, 64), **tiny_overrides("mit_small"))
    with pytest.raises(FileNotFoundError, match="no trained model at .*train this bundle first"):
        load_pretrained_init(net, tmp_path / "models" / "model.pt", strict=True, trained=True)
    full = UniMissSegmentation(3, 1, 3, variant="mit_small", img_size=(16, 64, 64))
    torch.save({"model": full.state_dict()}, tmp_path / "full.pt")
    with pytest.raises(ValueError, match="does not fit this network: .*configs/smoke.yaml after a smoke training") as err:
        load_pretrained_init(net, tmp_path / "full.pt", strict=True, trained="true")
    assert "\n" not in str(err.value)
    torch.save({"model": net.state_dict()}, tmp_path / "same.pt")
    report = load_pretrained_init(net, tmp_path / "same.pt", strict=True, trained=True)
    assert report["encoder_loaded"] == sum(1 for k in net.state_dict() if k.startswith("encoder."))
