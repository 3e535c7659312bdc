"""What the loaders say of a weights file that is not what it is handed over as: a fine-tuned model of a bundle given
as pretraining weights, another bundle's model given as this bundle's trained model; and how the load line counts
the tensors it loaded (inflated and resized ones are among them, not beside them)."""

from __future__ import annotations

import pytest
import torch

from unimiss_monai.handlers import load_pretrained_init
from unimiss_monai.networks import (
    DINOHead, StudentTeacher, UniMissClassifier, UniMissSegmentation, backbone_info, build_backbone, load_pretrained,
    tiny_overrides,
)
from unimiss_monai.networks.publish import read_export

KW = tiny_overrides("mit_small")


def _segmentation(img_size=(16, 64, 64)) -> UniMissSegmentation:
    return UniMissSegmentation(len(img_size), 1, 2, variant="mit_small", img_size=img_size, **KW)


def _export() -> dict:
    backbone = build_backbone("mit_small", (2, 3), img_size={2: (64, 64), 3: (16, 64, 64)}, **KW)
    return StudentTeacher(backbone, DINOHead(backbone.embed_dim, 16)).export()


class _EncoderHead(torch.nn.Module):
    """A network other than UniMiSS's, which the handler matches by parameter name itself."""

    def __init__(self):
        super().__init__()
        self.encoder, self.head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)


def test_a_fine_tuned_model_is_refused_as_pretrained_weights(tmp_path):
    tuned = tmp_path / "seg" / "model.pt"
    tuned.parent.mkdir()
    info = {"bundle": "unimiss_cxr_segmentation", "variant": "mit_small", "classes": ["lung"], "pretrained": True}
    torch.save({"model": _segmentation().state_dict(), "info": info}, tuned)
    with pytest.raises(ValueError) as err:
        load_pretrained(UniMissClassifier(3, 1, 2, variant="mit_small", img_size=(16, 64, 64), **KW), str(tuned))
    message = str(err.value)
    assert message == (f"{tuned} is a trained model of unimiss_cxr_segmentation, not a pretraining export (its info "
                       "records the classes of a fine-tuned network); pass a pretraining export: the models/model.pt "
                       "of a pretraining run or of the unimiss_pretraining bundle, or the file publish-pretrained wrote")
    # --pretrained_path, for a UniMiSS network and another one; publish-pretrained says the same (one check)
    for net in (_segmentation(), _EncoderHead()):
        with pytest.raises(ValueError, match=r"is a trained model of unimiss_cxr_segmentation, not a pretraining"):
            load_pretrained_init(net, tuned)
    other = tmp_path / "other.pt"
    torch.save({"model": _EncoderHead().state_dict(), "info": {"bundle": "some_bundle", "classes": [0, 1]}}, other)
    with pytest.raises(ValueError, match=rf"^{other} is a trained model of some_bundle, not a pretraining export"):
        load_pretrained_init(_EncoderHead(), other)
    with pytest.raises(ValueError) as err:
        read_export(tuned)
    assert str(err.value) == message
    # the bundle's own trained model still loads for evaluation, and a release check's dict payload still loads
    assert load_pretrained_init(_segmentation(), tuned, trained=True, bundle="unimiss_cxr_segmentation")["loaded"]
    assert load_pretrained(_segmentation(), torch.load(tuned, weights_only=True)).encoder_loaded
    # a strict load asks for the whole network, as bench-infer loads a bundle's model: not a backbone to fine-tune
    assert load_pretrained_init(_segmentation(), tuned, strict=True)["encoder_loaded"]


def test_what_the_bundles_pass_as_pretrained_weights_still_loads(tmp_path):
    exported = _export()
    files = {
        "export.pt": exported,  # a pretraining run's export
        "released.pt": {**exported, "info": {**exported["info"], "bundle": "unimiss_pretraining"}},  # a release
        # a release named by its publisher (package-bundle --name, release-official --name)
        "renamed.pt": {**exported, "info": {**exported["info"], "bundle": "unimiss_pretraining_mit_small"}},
        "noinfo.pt": {"model": exported["model"]},  # an older export
        "converted.pt": {"model": exported["model"], "variant": "mit_small"},  # convert-checkpoint's layout
    }
    for name, content in files.items():
        torch.save(content, tmp_path / name)
        report = load_pretrained_init(_segmentation(), tmp_path / name)
        assert report["encoder_loaded"] > 0, name


def test_the_load_line_counts_inflated_tensors_among_the_loaded_ones(tmp_path):
    seg2, seg3 = _segmentation((64, 64)), _segmentation()
    report = load_pretrained(seg3, {"model": seg2.state_dict(), "info": backbone_info(seg2)})
    n, inflated = report.encoder_total, len(report.inflated)
    line = report.summary()
    assert f"{n}/{n} encoder tensors loaded ({inflated} of them inflated 2D->3D, 0 resized); " in line
    assert 0 < inflated < n and report.encoder_loaded == n and report.encoder_inflated == inflated
    assert f", {inflated} inflated" not in line and "\n" not in line
    # a file whose 3D branch was never trained: those checkpoint tensors are not among the loaded ones
    backbone = build_backbone("mit_small", (2, 3), img_size={2: (64, 64), 3: (16, 64, 64)}, **KW)
    pair = StudentTeacher(backbone, DINOHead(backbone.embed_dim, 16))
    pair.trained_dims = [2]
    report = load_pretrained(_segmentation(), pair.export())
    line = report.summary()
    assert report.set_aside and f"{n}/{n} encoder tensors loaded ({len(report.inflated)} of them inflated" in line
    assert line.endswith(f"; {len(report.set_aside)} never-trained checkpoint tensors set aside, not loaded")


def test_a_model_of_another_bundle_is_named_alone_as_the_trained_model(tmp_path):
    # a CT segmentation model (with info) as the CT classification bundle's --ckpt_path: its grids cannot be told, but
    # the file is another bundle's, and that is all to say
    path = tmp_path / "model.pt"
    torch.save({"model": _segmentation().state_dict(), "info": {"bundle": "unimiss_ct_segmentation",
                                                                 "variant": "mit_small"}}, path)

    def classifier():
        return UniMissClassifier(3, 1, 2, variant="mit_small", img_size=(16, 96, 96), **KW)

    with pytest.raises(ValueError) as err:
        load_pretrained_init(classifier(), path, trained=True, bundle="unimiss_ct_classification")
    assert str(err.value) == (f"the trained model {path} is a model of unimiss_ct_segmentation (its info says so), not "
                              "of unimiss_ct_classification: point --ckpt_path (or --ckpt_dir) at a model this bundle "
                              "trained")
    # the loader's own refusal of that grid does not tell a file that has info to get one
    with pytest.raises(ValueError, match="cannot tell the grid encoder.pos_embeds") as err:
        load_pretrained(classifier(), str(path), what="trained model")
    assert "exported with info" not in str(err.value) and "img_size it was trained at" in str(err.value)
