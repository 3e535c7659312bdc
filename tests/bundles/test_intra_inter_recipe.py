"""Bundle ``unimiss_pretraining`` with the intra-inter overlay (``recipe_intra_inter.yaml``): schedule selection in
the config, the smoke composition end to end through ``python -m monai.bundle run``, gloo DDP, and the export loaded
into the fine-tuning networks (MiT 2D branch: the CXR segmentation network and, inflated 2D -> 3D, the CT one; a
MONAI ResNet slice encoder refused). Runs write under ``tmp_path``, never into ``bundles/``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bundle_runner import configs, run_bundle_cli

BUNDLE = "unimiss_pretraining"
RECIPE = ("train.json", "recipe_intra_inter.yaml", "smoke.yaml")
# a small slice encoder and heads for the runs that only check wiring (the smoke composition runs unchanged below)
SMALL = {"slice_backbone": "resnet10", "d_model": 32, "inter_num_heads": 4, "num_prototypes": 16, "proj_dim": 16,
         "head_hidden_dim": 32, "sequence_length": 16}


def _parser(samples: Path, out: Path, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(BUNDLE, *RECIPE))
    for k, v in {"dataset_dir": str(samples), "output_dir": str(out), "bundle_root": str(out / "bundle"), **overrides}.items():
        parser[k] = v
    return parser


def test_schedule_is_selected_in_the_overlay(pretraining_samples, tmp_path):
    staged = _parser(pretraining_samples, tmp_path, **SMALL, **{"train#epochs": 10})
    trainer = staged.get_parsed_content("train#trainer")
    assert type(trainer).__name__ == "IntraInterTrainer" and trainer.schedule == "staged"
    # the default split of train#epochs: 40 % 2D, 10 % masked embedding, the rest joint 3D
    assert [trainer.stage(e) for e in range(10)] == [1] * 4 + [2] + [3] * 5
    joint = _parser(pretraining_samples, tmp_path / "j", **SMALL, schedule="joint", loss_weights={"intra": 1.0, "inter": 0.5, "masked": 0.0})
    trainer = joint.get_parsed_content("train#trainer")
    assert {trainer.stage(e) for e in range(2)} == {0} and trainer.active_terms(0, "ct") == {"intra": 1.0, "inter": 0.5}
    bad = _parser(pretraining_samples, tmp_path / "b", **SMALL, stage_epochs=[1, 1, 1])
    with pytest.raises(Exception) as err:
        bad.get_parsed_content("train#trainer")
    chain = [err.value]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    assert any("summing to train#epochs=2" in str(e) for e in chain), chain


def test_ct_views_share_their_slices_and_pad_with_a_count(pretraining_samples, tmp_path):
    parser = _parser(pretraining_samples, tmp_path, **{**SMALL, "sequence_length": 24})
    item = parser.get_parsed_content("train#dataset")[(0, 7)]
    n = item["num_slices"]
    assert n == 16 and item["image_view0"].shape == item["image_view1"].shape == (1, 24, 64, 64)
    # trailing padding after the 16 real slices, no padding inside
    assert torch.all(item["image_view0"][:, n:] == 0) and torch.all(item["image_view0"][:, :n].flatten(1).std(dim=1) > 0)
    assert item["index"] == 0


def _check_export(model_path: Path) -> dict:
    export = torch.load(model_path, weights_only=True)
    assert set(export) == {"model", "info"} and export["info"]["recipe"] == "intra_inter"
    assert not any(k.startswith(("intra_head", "inter_head", "queue", "memory")) for k in export["model"])
    from unimiss_monai.networks import ImageVolumeNet

    net = ImageVolumeNet(**export["info"]["network"])
    net.load_state_dict(export["model"])  # rebuilt from info alone, strict
    return export


@pytest.mark.slow
def test_smoke_composition_runs_end_to_end(pretraining_samples, tmp_path):
    """train.json + recipe_intra_inter.yaml + smoke.yaml as they are (the smoke overlay's ResNet-10 slices and 32
    prototypes): about a minute on 2 CPU cores, see the bundle README."""
    out = tmp_path / "out"
    proc = run_bundle_cli(BUNDLE, RECIPE, bundle_root=str(tmp_path / "bundle"), dataset_dir=str(pretraining_samples), output_dir=str(out))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    export = _check_export(out / "models" / "model.pt")
    assert export["info"]["slice_backbone"] == "resnet10" and export["info"]["family"] == "resnet"
    ckpt = torch.load(out / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert {"network", "intra_head", "inter_head", "optimizer", "loss", "trainer"} <= set(ckpt)


@pytest.mark.slow
def _rank_records_overlay(path: Path) -> Path:
    """A config overlay whose ``run`` trains, then has every rank save what it trained: its rank, the number of ranks,
    the trainer's epoch length and last epoch's sample counts, its CT sampler's draws, and its network and heads."""
    record = ("$torch.save({'rank': torch.distributed.get_rank(), 'world_size': torch.distributed.get_world_size(), "
              "'epoch_length': @train#trainer.state.epoch_length, 'samples': dict(@train#trainer.state.samples_trained), "
              "'draws': @train#ct_loader.sampler.draws(), 'network': @network_def.state_dict(), "
              "'intra_head': @intra_head.state_dict(), 'inter_head': @inter_head.state_dict()}, "
              "@output_dir + '/rank' + str(torch.distributed.get_rank()) + '.pt')")
    path.write_text(json.dumps({"run": ["$@train#trainer.run()", record]}))
    return path


def test_ddp_two_gloo_processes(pretraining_samples, tmp_path):
    """Two gloo ranks split each epoch's draws between them (half the single-process epoch each, no CT volume on
    both) and end with the same network and heads (gradients averaged over the ranks, buffers following rank 0)."""
    out = tmp_path / "out"
    batch = 1
    overrides = {**SMALL, "slice_backbone": "mit_tiny", "slice_backbone_kwargs": "$dict(unimiss_monai.networks.tiny_overrides('mit_tiny'), img_size=[64, 64])",
                 "train#batch_size": batch, "schedule": "joint"}
    overlay = str(_rank_records_overlay(tmp_path / "rank_records.json"))  # an absolute path: configs() keeps it
    proc = run_bundle_cli(BUNDLE, (*RECIPE, "multi_gpu_train.json", overlay), nproc=2, bundle_root=str(tmp_path / "bundle"),
                          dataset_dir=str(pretraining_samples), output_dir=str(out), **overrides)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    export = _check_export(out / "models" / "model.pt")
    assert export["info"]["variant"] == "mit_tiny"

    from unimiss_monai.data import find_dataset

    n_ct = len(json.loads((Path(find_dataset(str(pretraining_samples), "pretraining")) / "datalist.json").read_text())["ct"])
    assert n_ct // batch >= 2  # one process would have at least two iterations to split
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]
    for r in ranks:
        assert r["epoch_length"] == n_ct // (2 * batch)  # half of one process's n_ct // batch
        # the smoke run's last epoch is its X-ray one (CT and X-ray epochs alternate, CT first)
        assert r["samples"] == {"ct": 0, "xray": r["epoch_length"] * batch}
        assert len(r["draws"]) == r["epoch_length"] * batch
    # the two CT shares are disjoint and together one pass over the CT volumes
    assert sorted(i for r in ranks for i, _ in r["draws"]) == list(range(n_ct))
    for part in ("network", "intra_head", "inter_head"):
        a, b = (r[part] for r in ranks)
        assert a.keys() == b.keys() and a
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{part}: the ranks ended with different {different[:5]}"


def _mit_export(tmp_path: Path, variant: str = "mitplus", **net_kw) -> Path:
    from unimiss_monai.networks import ImageVolumeNet, tiny_overrides

    net = ImageVolumeNet(variant, in_channels=1, d_model=32, num_heads=4, backbone_kwargs=dict(tiny_overrides(variant), img_size=[64, 64]), **net_kw)
    path = tmp_path / "model.pt"
    torch.save(net.export(), path)
    return path


def test_mit_export_loads_into_the_cxr_segmentation_network(tmp_path):
    from monai.bundle import ConfigParser

    from unimiss_monai.handlers import load_pretrained_init

    parser = ConfigParser()
    parser.read_config(configs("unimiss_cxr_segmentation", "train.json", "smoke.yaml"))
    network = parser.get_parsed_content("network_def")
    report = load_pretrained_init(network, str(_mit_export(tmp_path)), allow_partial=False)
    encoder = [k for k in network.state_dict() if k.startswith("encoder.")]
    assert encoder and report["encoder_loaded"] == len(encoder)
    assert not [k for k in report["missing"] if k.startswith("encoder.")]
    # the inter-slice transformer and predictor have no place in a 2D segmentation network
    assert any(k.startswith("inter.") for k in report["unexpected"])


def test_mit_export_inflates_into_3d_networks_slice_equivalently(tmp_path):
    from unimiss_monai.networks import MiTEncoder, UniMissSegmentation, backbone_info, load_pretrained, tiny_overrides

    seg = UniMissSegmentation(3, 1, 2, variant="mitplus", img_size=[16, 64, 64], **tiny_overrides("mitplus"))
    report = load_pretrained(seg, str(_mit_export(tmp_path)))
    assert report.encoder_loaded == report.encoder_total and report.inflated
    assert all(".3d." in k for k in report.inflated) and "inflated 2D->3D" in report.summary()
    # the rule: a 3D encoder inflated from a 2D one sees a volume of identical slices as the 2D one sees each slice
    torch.manual_seed(0)
    kw = tiny_overrides("mit_tiny")
    e2 = MiTEncoder("mit_tiny", spatial_dims=2, in_channels=1, img_size=[64, 64], **kw).eval()
    e3 = MiTEncoder("mit_tiny", spatial_dims=3, in_channels=1, img_size=[16, 64, 64], **kw).eval()
    load_pretrained(e3, {"model": e2.state_dict(), "info": backbone_info(e2)})
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        maps2, maps3 = e2.forward_intermediates(x)[0], e3.forward_intermediates(x[:, :, None].repeat(1, 1, 16, 1, 1))[0]
    for a, b in zip(maps2, maps3):
        torch.testing.assert_close(b, a.unsqueeze(2).expand_as(b), atol=1e-5, rtol=1e-4)


def test_resnet_export_is_refused_by_the_mit_networks(tmp_path):
    from unimiss_monai.networks import ImageVolumeNet, UniMissClassifier, load_pretrained, tiny_overrides

    path = tmp_path / "model.pt"
    torch.save(ImageVolumeNet("resnet10", d_model=32, num_heads=4).export(), path)
    clf = UniMissClassifier(2, 3, 2, variant="mit_tiny", img_size=[64, 64], **tiny_overrides("mit_tiny"))
    with pytest.raises(ValueError, match=r"model.pt: .*MONAI resnet10 slice encoder.*MiT-based and cannot take it"):
        load_pretrained(clf, str(path))


@pytest.mark.parametrize("recipe", [("train.json",), ("train.json", "recipe_intra_inter.yaml")], ids=["unimiss_plus", "intra_inter"])
def test_the_loss_curves_come_before_the_checkpoint(recipe):
    """An iteration's curve values are written before its checkpoint (both every ``train#save_every``), so a run
    killed right after a checkpoint resumes with no gap in its curves."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(BUNDLE, *recipe))
    targets = [h["_target_"].rsplit(".", 1)[-1] for h in parser.get("train#handlers")]
    assert targets.index("LossCurvePlotter") < targets.index("TrainingCheckpoint"), targets
    plotter = parser.get("train#handlers")[targets.index("LossCurvePlotter")]
    checkpoint = parser.get("train#handlers")[targets.index("TrainingCheckpoint")]
    assert plotter["write_every"] == checkpoint["save_every"] == "@train#save_every"
