"""label-efficiency at a microscopic scale: real bundle runs write the JSON and PNG, and the numbers are theirs.
(The design, the statistics and resuming are tested without bundle runs in test_label_efficiency_design.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unimiss_monai.benchmarks.label_efficiency import TASKS, label_efficiency
from unimiss_monai.networks.variants import SMOKE_WIDTHS
from unimiss_monai.utils import RunArgumentError
from unimiss_monai.utils.errors import root_cause

pytestmark = pytest.mark.integration


def _train_loss_steps(run_dir: Path) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "eval"))
    acc.Reload()
    return len(acc.Scalars("train_loss"))


@pytest.fixture(scope="module")
def cxr_samples(tmp_path_factory):
    from unimiss_monai.data.samples import samples

    return samples(str(tmp_path_factory.mktemp("samples")), synthetic=True, only="cxr_segmentation")


def _tiny_encoder_checkpoint(path: Path, **widths) -> str:
    """A checkpoint in the pretraining export format ({"model": backbone state dict}) with known weights."""
    import torch

    from unimiss_monai.networks import UniMissSegmentation

    small = TASKS["unimiss_cxr_segmentation"].small
    dims = {k.split("#")[1]: v for k, v in small.items() if k.startswith("network_def#")} | widths
    net = UniMissSegmentation(spatial_dims=2, in_channels=3, out_channels=5, variant="mitplus", img_size=[64, 64],
                              **dims)
    torch.save({"model": net.encoder.state_dict()}, path)
    return str(path)


def test_micro_run_writes_json_and_png_from_real_reports_and_resumes(tmp_path, cxr_samples):
    out = tmp_path / "le"
    kw = dict(fractions="0.25", seeds=1, dataset_dir=cxr_samples, out=str(out), max_epochs=2,
              epoch_iterations=3, pretrained="none", batch_size=2)
    path = label_efficiency(**kw)
    summary = json.loads(Path(path).read_text())
    assert list(summary["results"]) == ["scratch"] and summary["arms"] == ["scratch"] and not summary["failures"]
    (run,) = summary["runs"]
    assert run["num_labels"] == 2 and run["fraction"] == 0.25
    # the budget is iterations, not passes over the subset: 2 labelled images still get 2 x 3 steps
    assert _train_loss_steps(out / "runs" / "scratch_f0.25_s0") == 6 == summary["iterations_per_run"]
    report = json.loads((out / run["report"]).read_text())
    dice = {k: v["dice"] for k, v in report["mean"].items()}
    assert run["per_structure"] == dice
    present = [d for d in dice.values() if d is not None]
    assert run["score"] == pytest.approx(sum(present) / len(present))
    assert summary["results"]["scratch"]["0.25"]["per_seed"] == {"0": run["score"]}
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # same settings: the record is read back, not retrained (same JSON); other settings: retrained
    record = (out / "runs" / "scratch_f0.25_s0" / "record.json").read_bytes()
    assert label_efficiency(**kw) == path and Path(path).read_text() == json.dumps(summary, indent=2)
    assert (out / "runs" / "scratch_f0.25_s0" / "record.json").read_bytes() == record
    label_efficiency(**{**kw, "epoch_iterations": 2})
    assert _train_loss_steps(out / "runs" / "scratch_f0.25_s0") == 4


def test_a_study_on_changed_data_trains_again(tmp_path, cxr_samples):
    import shutil

    data = shutil.copytree(cxr_samples, tmp_path / "samples")
    out = tmp_path / "le"
    kw = dict(fractions="0.25", seeds=1, dataset_dir=str(data), out=str(out), max_epochs=1, epoch_iterations=2,
              pretrained="none", batch_size=2)
    first = json.loads(Path(label_efficiency(**kw)).read_text())
    record = out / "runs" / "scratch_f0.25_s0" / "record.json"
    kept = record.read_bytes()
    label_efficiency(**kw)
    assert record.read_bytes() == kept  # same data: read back
    # the same file names with other contents (e.g. the set rebuilt): the run is trained again on the new data
    datalist = json.loads((data / "cxr_segmentation" / "datalist.json").read_text())
    a, b = (data / "cxr_segmentation" / item["image"] for item in datalist["training"][:2])
    a.write_bytes(b.read_bytes())
    second = json.loads(Path(label_efficiency(**kw)).read_text())
    assert second["data_sha256"] != first["data_sha256"]
    assert json.loads(record.read_bytes())["fingerprint"] != json.loads(kept)["fingerprint"]


def test_pretrained_and_scratch_share_subsets_and_a_bad_run_does_not_stop_the_others(tmp_path, cxr_samples):
    import torch

    good = _tiny_encoder_checkpoint(tmp_path / "good.pt")
    out = tmp_path / "le"
    summary = json.loads(Path(label_efficiency(fractions="0.25", seeds=1, dataset_dir=cxr_samples,
                                               out=str(out), max_epochs=1, epoch_iterations=1,
                                               pretrained=good, batch_size=2)).read_text())
    assert sorted(summary["results"]) == ["pretrained", "scratch"] and not summary["failures"]
    scratch, pre = (json.loads((out / "runs" / f"{i}_f0.25_s0" / "record.json").read_text())
                    for i in ("scratch", "pretrained"))
    assert scratch["indices"] == pre["indices"] and scratch["seed"] == pre["seed"] == 0
    assert summary["arm_weights"]["pretrained"]["weights"] == good and summary["arm_weights"]["scratch"]["weights"] is None

    # a checkpoint of other widths cannot initialise the network: those runs fail, the scratch runs still count
    bad = _tiny_encoder_checkpoint(tmp_path / "bad.pt", embed_dims=[8, 16, 16, 32])
    assert torch.load(bad, weights_only=True)["model"]
    with pytest.raises(RuntimeError, match=r"^label-efficiency: 1 of 2 runs failed, listed in .*label_efficiency.json"):
        label_efficiency(fractions="0.25", seeds=1, dataset_dir=cxr_samples, out=str(tmp_path / "bad"), max_epochs=1,
                         epoch_iterations=1, pretrained=bad, batch_size=2)
    summary = json.loads((tmp_path / "bad" / "label_efficiency.json").read_text())
    (failure,) = summary["failures"]
    assert failure["arm"] == "pretrained" and "bad.pt" in failure["error"]
    assert list(summary["results"]) == ["scratch", "pretrained"] and summary["results"]["pretrained"] == {}
    assert summary["results"]["scratch"]["0.25"]["n"] == 1 and summary["paired_difference"]["0.25"]["n"] == 0


@pytest.mark.parametrize("bundle", sorted(TASKS))
def test_the_study_seed_drives_the_bundles_training_randomness(bundle):
    from monai.bundle import ConfigParser

    from unimiss_monai.benchmarks.label_efficiency import TASKS

    task = TASKS[bundle]
    configs = Path(__file__).resolve().parents[2] / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / n) for n in (*task.train_configs, *task.small_configs)])
    parser.update({"seed": 7})
    # the study sets ``seed``; the bundle's own determinism call reads it (no seed fixed in the config)
    seeding = [e for e in parser["initialize"] if "set_determinism" in e]
    assert seeding == ["$monai.utils.set_determinism(seed=@seed)"] and parser.get_parsed_content("seed") == 7
    if "classification" in bundle:
        # the tiny smoke network: the named preset, or its widths written out (those win over a preset's)
        from unimiss_monai.networks.variants import get_variant

        network, variant = parser.get("network_def"), parser.get_parsed_content("network_def#variant")
        widths = (parser.get_parsed_content("network_def#embed_dims") if "embed_dims" in network
                  else get_variant(variant, preset=network.get("preset")).embed_dims)
        assert tuple(widths) == SMOKE_WIDTHS["embed_dims"], (network.get("preset"), widths)


def test_micro_classification_run_scores_macro_auc_from_metrics_json(tmp_path):
    from unimiss_monai.data.samples import samples

    data = samples(str(tmp_path / "samples"), synthetic=True, only="cxr_classification")
    datalist = json.loads((Path(data) / "cxr_classification" / "datalist.json").read_text())
    out = tmp_path / "le"
    path = label_efficiency(bundle="unimiss_cxr_classification", fractions="0.5", seeds=1, dataset_dir=data,
                            out=str(out), max_epochs=1, epoch_iterations=2, pretrained="none", batch_size=8)
    summary = json.loads(Path(path).read_text())
    assert summary["metric"] == "macro AUC" and list(summary["results"]) == ["scratch"]
    assert summary["num_training"] == len(datalist["training"])
    (run,) = summary["runs"]
    assert run["num_labels"] == -(-len(datalist["training"]) // 2)
    report_path = out / run["report"]
    assert report_path.name == "metrics.json"
    report = json.loads(report_path.read_text())
    # the held-out test split was scored, and the number is the report's own macro AUC
    assert report["num_cases"] == len(datalist["test"])
    assert run["score"] == pytest.approx(report["macro_auc"]) and 0.0 <= run["score"] <= 1.0
    assert summary["results"]["scratch"]["0.5"]["mean"] == pytest.approx(run["score"])
    # the stratified draw: half of the split holds every combination of findings, so both findings' positives
    labels = [datalist["training"][i]["label"] for i in run["indices"]]
    assert {c for lab in labels for c in lab} == set(datalist["class_names"])
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown bundle"):
        label_efficiency(bundle="nope")
    with pytest.raises(ValueError, match=r"fractions must be in \(0, 1\]"):
        label_efficiency(fractions="0,1.5")
    with pytest.raises(FileNotFoundError, match="absent.pt not found"):
        label_efficiency(pretrained="absent.pt")
    with pytest.raises(ValueError, match="start with scratch"):
        label_efficiency(arms="pretrained")
    with pytest.raises(ValueError, match="use --out"):
        label_efficiency(output_dir="x")
    with pytest.raises(ValueError, match="arm=path"):
        label_efficiency(arms="scratch,unimiss", weights="unimiss")
    for confidence in (1.5, 0, "high"):  # refused before any run, not by the statistics after all of them
        with pytest.raises(ValueError, match=r"--confidence must be in \(0, 1\)"):
            label_efficiency(confidence=confidence, dataset_dir="absent")


def test_a_misspelled_option_is_refused_before_any_work(tmp_path):
    """``--fraction 0.1`` / ``--max_epoch 3`` were overrides MONAI adds silently, and the study ran with the defaults:
    an id that neither the train nor the evaluate configs define is refused, with the nearest options and ids, and
    so is a value of the wrong type; a real id passes the check."""
    study = tmp_path / "study"
    common = dict(out=str(study), pretrained="none", dataset_dir=str(tmp_path / "absent"))
    with pytest.raises(RunArgumentError) as err:
        label_efficiency(**common, fraction=0.1, max_epoch=3, learning_rate="fast")
    message = str(err.value)
    assert message.startswith("label-efficiency: unknown option --fraction: neither an option of label-efficiency nor "
                              "a config id of unimiss_cxr_segmentation; did you mean --fractions?")
    assert "unknown option --max_epoch: " in message and "did you mean --max_epochs?" in message
    assert "config id 'learning_rate' expects a number, got 'fast'" in message and "\n" not in message
    assert not study.exists()
    with pytest.raises(RuntimeError) as err:  # past the check: the (absent) data is what stops it, inside MONAI
        label_efficiency(**common, learning_rate=1e-3, **{"network_def#drop_path_rate": 0.1})
    assert isinstance(root_cause(err.value), FileNotFoundError)


def test_micro_ct_segmentation_run_scores_3d_dice_with_its_own_checkpoint_folder(tmp_path):
    from unimiss_monai.data.samples import samples

    data = samples(str(tmp_path / "samples"), synthetic=True, only="ct_segmentation")
    out = tmp_path / "le"
    # two seeds in two worker processes (--jobs 2): the bundle runner travels to them
    summary = json.loads(Path(label_efficiency(bundle="unimiss_ct_segmentation", fractions="0.5", seeds=2,
                                               dataset_dir=data, out=str(out), max_epochs=1, epoch_iterations=2,
                                               pretrained="none", jobs=2)).read_text())
    run, other = summary["runs"]
    assert run["status"] == other["status"] == "ok" and summary["metric"] == "Dice"
    assert summary["command"].endswith("--jobs 2") and not summary["failures"]
    # the evaluation read the model this run trained (smoke.yaml would move ckpt_dir under each step's output_dir)
    assert (out / "runs" / "scratch_f0.5_s0" / "models" / "model.pt").is_file()
    report = json.loads((out / run["report"]).read_text())
    present = [v["dice"] for v in report["mean"].values() if v.get("dice") is not None]
    assert run["score"] == pytest.approx(sum(present) / len(present))
    # the study reads Dice only, so the scoring run skips the surface distances
    assert report["surface_metrics"] is False and all(v["hd95"] is None for v in report["mean"].values())
    # the learning-rate schedule spans the iterations the study runs, not len(dataloader) per epoch
    assert summary["overrides"]["train#lr_scheduler#t_total"] == "$@max_epochs * 2"
    # every held-out item is scored: the validation items (never chosen on; validation runs once, at the end) and
    # the test items
    datalist = json.loads((Path(data) / "ct_segmentation" / "datalist.json").read_text())
    held_out = len(datalist["validation"]) + len(datalist["test"])
    assert report["num_cases"] == held_out and summary["split"] == "the validation and test slabs"
