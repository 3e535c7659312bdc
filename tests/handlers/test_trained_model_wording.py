"""Evaluation and inference load the bundle's own trained model through ``load_pretrained_init(..., trained=True)``:
its log lines and refusals speak of the trained model, never of a pretrained checkpoint; the pretraining load keeps
its wording."""

from __future__ import annotations

import logging

import pytest
import torch

from unimiss_monai.handlers import load_pretrained_init

from tiny_nets import EncoderHead as _Net, tiny_segmentation as _net


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("unimiss_monai.")]


def test_a_trained_unimiss_network_is_logged_as_the_trained_model(tmp_path, caplog):
    net = _net()
    path = tmp_path / "model.pt"
    torch.save({"model": net.state_dict()}, path)
    with caplog.at_level(logging.DEBUG, logger="unimiss_monai"):
        load_pretrained_init(_net(), path, trained=True)
    lines = _messages(caplog)
    assert lines and lines[0].startswith(f"trained model {path}: variant ") and "encoder tensors loaded" in lines[0]
    assert not any("pretrained" in line for line in lines)


def test_another_trained_network_is_logged_as_the_trained_model(tmp_path, caplog):
    path = tmp_path / "model.pt"
    torch.save({"model": _Net().state_dict()}, path)
    with caplog.at_level(logging.DEBUG, logger="unimiss_monai"):
        load_pretrained_init(_Net(), path, trained=True)
    assert _messages(caplog) == [f"trained model {path} -> network: loaded 4/4 tensors, 0 kept random, 0 unused"]


def test_the_pretraining_load_keeps_its_wording(tmp_path, caplog):
    path = tmp_path / "model.pt"
    torch.save({"model": _Net().state_dict()}, path)
    with caplog.at_level(logging.DEBUG, logger="unimiss_monai"):
        load_pretrained_init(_Net(), path)
    assert _messages(caplog) == [f"{path} -> network: loaded 4/4 tensors, 0 kept random, 0 unused"]
    path.write_bytes(b"not a torch file")
    for net in (_net(), _Net()):
        with pytest.raises(ValueError, match=rf"^pretrained checkpoint '{path}' is not a "):
            load_pretrained_init(net, path)


def _refusal(net, path, advice: bool = True) -> str:
    """The one-line refusal of ``path`` as ``net``'s trained model; ``advice``: it ends with the overlays' advice."""
    with pytest.raises(ValueError) as err:
        load_pretrained_init(net, path, trained=True)
    message = str(err.value)
    assert "\n" not in message and "pretrained" not in message and ("configs/smoke.yaml" in message) == advice
    return message


def test_refusals_of_a_trained_model_name_no_pretrained_checkpoint(tmp_path):
    # an encoder-only file leaves the decoder untrained: the strict load's report names the file once, in front
    encoder_only = tmp_path / "encoder.pt"
    torch.save({"model": {k: v for k, v in _net().state_dict().items() if k.startswith("encoder.")}}, encoder_only)
    message = _refusal(_net(), encoder_only)
    assert message.startswith(f"the trained model {encoder_only} does not fit this network: strict loading failed: "
                              "variant ")
    assert message.count(str(encoder_only)) == 1
    # a damaged file, for a UniMiSS network and for another one
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a torch file")
    for net in (_net(), _Net()):
        # the file is damaged: the overlays it was trained with would not help
        assert _refusal(net, damaged, advice=False).startswith(f"trained model '{damaged}' is not a ")
    # another network's encoder alone is no trained model of the whole network
    encoder_only = tmp_path / "encoder_of_another.pt"
    torch.save({"model": _Net().encoder.state_dict()}, encoder_only)
    assert "shares no parameter names with EncoderHead" in _refusal(_Net(), encoder_only)
    # another network's file short of a tensor: strict by design, so no advice to relax it
    short = tmp_path / "short.pt"
    torch.save({"model": {k: v for k, v in _Net().state_dict().items() if k != "head.bias"}}, short)
    message = _refusal(_Net(), short)
    assert message.startswith(f"the trained model {short} lacks 1 tensors of network (e.g. ['head.bias']) -- run ")
    with pytest.raises(ValueError, match=r"lacks 1 tensors of network \(e.g. \['head.bias'\]\); use strict=False"):
        load_pretrained_init(_Net(), short, strict=True)  # the pretraining load keeps its advice
    # the model of another bundle: its info says which; one of this bundle gets the overlays' advice
    other = tmp_path / "other_bundle.pt"
    torch.save({"model": _net().state_dict(), "info": {"bundle": "unimiss_cxr_segmentation"}}, other)
    with pytest.raises(ValueError) as err:
        load_pretrained_init(_Net(), other, trained=True, bundle="unimiss_cxr_classification")
    # said alone: how the load failed would only distract from whose model it is
    assert str(err.value) == (f"the trained model {other} is a model of unimiss_cxr_segmentation (its info says so), "
                              "not of unimiss_cxr_classification: point --ckpt_path (or --ckpt_dir) at a model this "
                              "bundle trained")
    with pytest.raises(ValueError, match=r"-- run this command with the overlays .* --variant\)$"):
        load_pretrained_init(_Net(), other, trained=True, bundle="unimiss_cxr_segmentation")
    assert "unimiss_cxr_segmentation" not in _refusal(_Net(), other)  # which bundle runs is not known: no claim


def test_a_trained_model_is_refused_at_other_input_settings(tmp_path):
    net = _net()
    path = tmp_path / "model.pt"
    recorded = {"pixdim": [5, 5, 5], "roi_size": [16, 64, 64], "luminance": False}
    torch.save({"model": net.state_dict(), "info": {"bundle": "unimiss_ct_segmentation", "settings": recorded}}, path)
    # the same settings as the command line gives them (floats, a word for a boolean) load
    same = {"pixdim": [5.0, 5.0, 5.0], "roi_size": [16, 64, 64], "luminance": "false"}
    assert load_pretrained_init(_net(), path, trained=True, settings=same)["loaded"] > 0
    with pytest.raises(ValueError) as err:
        load_pretrained_init(_net(), path, trained=True, settings={**same, "pixdim": [1.5, 1.5, 2.5]})
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "pixdim [5, 5, 5] (this run: [1.5, 1.5, 2.5])" in message
    assert "--pixdim [5,5,5]" in message and "roi_size" not in message.split("run this command with")[1]
    # a model saved before settings were recorded cannot be checked: it loads as before
    torch.save({"model": net.state_dict()}, path)
    assert load_pretrained_init(_net(), path, trained=True, settings={"pixdim": [1.5, 1.5, 2.5]})["loaded"] > 0


def test_a_pretraining_export_or_a_fine_tune_run_is_named_for_what_it_is(tmp_path):
    """A pretraining export given as the trained model was told to rerun with the overlays it was trained with; a
    fine-tuning run's folder given as --pretrained_path was told as a pretraining run to resume."""
    from unimiss_monai.networks.pretrained import backbone_info
    from unimiss_monai.networks.weights_file import weights_in_folder

    net = _net()
    export = tmp_path / "pre run" / "models" / "model.pt"
    export.parent.mkdir(parents=True)
    encoder = {k: v for k, v in net.state_dict().items() if k.startswith("encoder.")}
    torch.save({"model": encoder, "info": backbone_info(net)}, export)
    with pytest.raises(ValueError) as err:  # names the option that takes it: --pretrained_path
        load_pretrained_init(_net(), export, trained=True)
    message = str(err.value)
    assert message.startswith(f"the trained model {export} does not fit this network") and "\n" not in message
    assert message.endswith(f"; it is a pretraining export (a backbone without this bundle's head), not a model this "
                            f"bundle trained: fine-tune from it first (configs/train.json with --pretrained_path "
                            f"'{export}'), then point --ckpt_path at the model that writes")
    # released, it names its release: still a pretraining export, not "a model of" another bundle
    released = tmp_path / "released.pt"
    torch.save({"model": encoder, "info": {**backbone_info(net), "bundle": "unimiss_pretraining"}}, released)
    with pytest.raises(ValueError, match=r"; it is a pretraining export \(a backbone without this bundle's head\)"):
        load_pretrained_init(_net(), released, trained=True, bundle="unimiss_ct_segmentation")
    run = tmp_path / "ctseg out"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"network": net.state_dict(), "best_model": {}}, run / "checkpoints" / "checkpoint.pt")
    with pytest.raises(FileNotFoundError, match=r"is the output folder of a fine-tuning run \(its checkpoint holds a "
                                                r"task network\), not of a pretraining run; pass"):
        weights_in_folder(run)
    torch.save({"network": {}, "loss": {}}, run / "checkpoints" / "checkpoint.pt")  # a pretraining run's
    with pytest.raises(FileNotFoundError, match=r"is the folder of a pretraining run that has not finished"):
        weights_in_folder(run)


@pytest.mark.parametrize("option", ["class_names", "structures"])
def test_a_trained_model_is_refused_for_classes_in_another_order_or_other_classes(tmp_path, option):
    """The outputs keep the order the model learnt; the run's names label them. The same names in another order gave
    every probability column and mask channel another class's name, and per-class scores against the wrong labels."""
    net = _net()
    path = tmp_path / "model.pt"
    torch.save({"model": net.state_dict(), "info": {"classes": ["nodule", "pleural effusion"]}}, path)
    assert load_pretrained_init(_net(), path, trained=True, classes=("nodule", "pleural effusion"))["loaded"] > 0
    with pytest.raises(ValueError) as err:
        load_pretrained_init(_net(), path, trained=True, classes=["pleural effusion", "nodule"], classes_option=option)
    assert str(err.value) == (
        f"the trained model {path} was trained with --{option} ['nodule', 'pleural effusion'], this run names "
        "['pleural effusion', 'nodule']: the same classes in another order, so its outputs would go by the wrong "
        f"names; run this command with --{option} '[\"nodule\", \"pleural effusion\"]'")
    # another count is said as classes before the tensors (whose head would not fit) are compared
    with pytest.raises(ValueError, match=r"this run names \['nodule'\]: other classes; run this command with"):
        load_pretrained_init(_net(), path, trained=True, classes=["nodule"])
    # a model saved before classes were recorded cannot be checked: it loads as before
    torch.save({"model": net.state_dict()}, path)
    assert load_pretrained_init(_net(), path, trained=True, classes=["a", "b"])["loaded"] > 0


def test_a_model_of_another_bundle_is_named_so_before_its_classes_are_compared(tmp_path):
    """Every bundle's model records classes: another bundle's model was told to pass that bundle's class names, which
    only led to the refusal naming the other bundle afterwards."""
    path = tmp_path / "model.pt"
    torch.save({"model": _Net().state_dict(), "info": {"bundle": "unimiss_ct_segmentation", "classes": ["liver"]}},
               path)
    with pytest.raises(ValueError, match=r"is a model of unimiss_ct_segmentation \(its info says so\), not of "
                                         r"unimiss_ct_classification"):
        load_pretrained_init(_net(), path, trained=True, bundle="unimiss_ct_classification", classes=["a", "b"])
    # one class name given as a word from the command line is one class, not its letters
    torch.save({"model": _net().state_dict(), "info": {"classes": ["nodule"]}}, path)
    assert load_pretrained_init(_net(), path, trained=True, classes="nodule")["loaded"] > 0
    with pytest.raises(ValueError, match=r"this run names \['mass'\]: other classes"):
        load_pretrained_init(_net(), path, trained=True, classes="mass")
