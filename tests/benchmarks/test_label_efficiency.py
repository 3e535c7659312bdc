"""label-efficiency at a microscopic scale: real bundle runs write the JSON and PNG, and the numbers are theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unimiss_monai.benchmarks.label_efficiency import TASKS, label_efficiency, summarise

pytestmark = pytest.mark.integration


def test_summarise_interval_matches_t_distribution():
    s = summarise([0.5, 0.7, 0.6])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1)
    from scipy import stats

    assert s["ci95"][1] - s["mean"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.1 / 3**0.5, rel=1e-3)
    for n in (2, 5, 13):  # the built-in quantile table agrees with scipy
        s = summarise([float(i % 2) for i in range(n)])
        assert s["ci95"][1] - s["mean"] == pytest.approx(stats.t.ppf(0.975, n - 1) * s["std"] / n**0.5, rel=1e-3)
    assert summarise([0.4])["ci95"] is None


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
    kw = dict(fractions="0.25", seeds=1, dataset_dir=cxr_samples, output_dir=str(out), max_epochs=2,
              epoch_iterations=3, pretrained="none", batch_size=2)
    path = label_efficiency(**kw)
    summary = json.loads(Path(path).read_text())
    assert list(summary["results"]) == ["scratch"] and summary["pretrained"] is None and not summary["failures"]
    (run,) = summary["runs"]
    assert run["num_labels"] == 2 and run["fraction"] == 0.25
    # the budget is iterations, not passes over the subset: 2 labelled images still get 2 x 3 steps
    assert _train_loss_steps(out / "runs" / "scratch_f0.25_s0") == 6 == summary["iterations_per_run"]
    report = json.loads(Path(run["report"]).read_text())
    dice = {k: v["dice"] for k, v in report["mean"].items()}
    assert run["per_structure"] == dice
    present = [d for d in dice.values() if d is not None]
    assert run["score"] == pytest.approx(sum(present) / len(present))
    assert summary["results"]["scratch"]["0.25"]["mean"] == pytest.approx(run["score"])
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # same settings: the report is read back, not retrained; other settings: retrained
    again = json.loads(Path(label_efficiency(**kw)).read_text())
    assert again["runs"][0].get("reused") and again["runs"][0]["score"] == run["score"]
    changed = json.loads(Path(label_efficiency(**{**kw, "epoch_iterations": 2})).read_text())
    assert not changed["runs"][0].get("reused")


def test_pretrained_and_scratch_share_subsets_and_a_bad_run_does_not_stop_the_others(tmp_path, cxr_samples):
    import torch

    good = _tiny_encoder_checkpoint(tmp_path / "good.pt")
    out = tmp_path / "le"
    summary = json.loads(Path(label_efficiency(fractions="0.25", seeds=1, dataset_dir=cxr_samples,
                                               output_dir=str(out), max_epochs=1, epoch_iterations=1,
                                               pretrained=good, batch_size=2)).read_text())
    assert sorted(summary["results"]) == ["pretrained", "scratch"] and not summary["failures"]
    scratch, pre = (json.loads((out / "runs" / f"{i}_f0.25_s0" / "run_settings.json").read_text())
                    for i in ("scratch", "pretrained"))
    assert scratch["subset"] == pre["subset"] and pre["pretrained_path"] == good and scratch["pretrained_path"] is None

    # a checkpoint of other widths cannot initialise the network: those runs fail, the scratch runs still count
    bad = _tiny_encoder_checkpoint(tmp_path / "bad.pt", embed_dims=[8, 16, 16, 32])
    assert torch.load(bad, weights_only=True)["model"]
    summary = json.loads(Path(label_efficiency(fractions="0.25", seeds=1, dataset_dir=cxr_samples,
                                               output_dir=str(tmp_path / "bad"), max_epochs=1, epoch_iterations=1,
                                               pretrained=bad, batch_size=2)).read_text())
    (failure,) = summary["failures"]
    assert failure["init"] == "pretrained" and "bad.pt" in failure["error"]
    assert list(summary["results"]) == ["scratch", "pretrained"] and summary["results"]["pretrained"] == {}
    assert summary["results"]["scratch"]["0.25"]["n"] == 1


@pytest.mark.parametrize("bundle", ["unimiss_cxr_segmentation", "unimiss_cxr_classification", "unimiss_ct_classification"])
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
        assert parser["network_def#embed_dims"] == [16, 32, 32, 64]  # the tiny smoke network


def test_micro_classification_run_scores_macro_auc_from_metrics_json(tmp_path):
    from unimiss_monai.data.samples import samples

    data = samples(str(tmp_path / "samples"), synthetic=True, only="cxr_classification")
    datalist = json.loads((Path(data) / "cxr_classification" / "datalist.json").read_text())
    out = tmp_path / "le"
    path = label_efficiency(bundle="unimiss_cxr_classification", fractions="0.125", seeds=1, dataset_dir=data,
                            output_dir=str(out), max_epochs=1, epoch_iterations=2, pretrained="none", batch_size=8)
    summary = json.loads(Path(path).read_text())
    assert summary["metric"] == "macro AUC" and list(summary["results"]) == ["scratch"]
    assert summary["num_training"] == len(datalist["training"])
    (run,) = summary["runs"]
    assert run["num_labels"] == -(-len(datalist["training"]) // 8)
    report_path = Path(run["report"])
    assert report_path.name == "metrics.json"
    report = json.loads(report_path.read_text())
    # the held-out test split was scored, and the number is the report's own macro AUC
    assert report["num_cases"] == len(datalist["test"])
    assert run["score"] == pytest.approx(report["macro_auc"]) and 0.0 <= run["score"] <= 1.0
    assert summary["results"]["scratch"]["0.125"]["mean"] == pytest.approx(run["score"])
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown bundle"):
        label_efficiency(bundle="nope")
    with pytest.raises(ValueError, match=r"fractions must be in \(0, 1\]"):
        label_efficiency(fractions="0,1.5")
    with pytest.raises(FileNotFoundError, match="absent.pt not found"):
        label_efficiency(pretrained="absent.pt")
