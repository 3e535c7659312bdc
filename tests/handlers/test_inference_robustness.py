"""Inference past a case whose network forward fails (an input size the network cannot take, a runtime error) or
whose output a writer cannot use: it is recorded as failed with its file name, the other cases are written, and the
one summary format (``summary.json`` of InferenceSummary) counts it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from failing_networks import FailsOnNegative
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer
from monai.transforms import Activationsd, Compose, EnsureTyped, LoadImaged
from torch import nn

from unimiss_monai.data.tolerant import TolerantDataset
from unimiss_monai.handlers import ClassProbabilityWriter, InferenceSummary, SegmentationWriter
from unimiss_monai.networks import UniMissClassifier, UniMissSegmentation, tiny_overrides

LOAD = Compose([LoadImaged("image", ensure_channel_first=True, image_only=True), EnsureTyped("image", dtype=torch.float32)])


def _write(tmp_path, arrays: dict[str, np.ndarray]) -> list[dict]:
    data = []
    for name, array in arrays.items():
        np.save(tmp_path / name, array.astype(np.float32))
        data.append({"image": str(tmp_path / name)})
    return data


def _run(data, network, handler, placeholder, batch_size=1, postprocessing=None, summary_dir=None, failed=0):
    """Run an evaluator with ``handler``, followed by an InferenceSummary when ``summary_dir`` is given; ``failed``
    cases of ``len(data)`` make the summary fail the run at its end, after every other case is written."""
    loader = DataLoader(TolerantDataset(data, LOAD, placeholder), batch_size=batch_size, num_workers=0)
    handlers = [handler] + ([InferenceSummary(summary_dir)] if summary_dir is not None else [])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader, network=network.eval(), inferer=SimpleInferer(),
        postprocessing=postprocessing, val_handlers=handlers,
    )
    if not failed:
        evaluator.run()
        return evaluator
    with pytest.raises(RuntimeError, match=rf"^inference: {failed} of {len(data)} cases failed, listed .*summary.json"):
        evaluator.run()
    return evaluator


def test_classifier_forward_failure_is_recorded_and_the_run_goes_on(tmp_path, caplog):
    rng = np.random.default_rng(0)
    data = _write(tmp_path, {"a.npy": rng.random((64, 64)), "odd_size.npy": rng.random((48, 48)), "b.npy": rng.random((64, 64))})
    net = UniMissClassifier(2, 1, 2, img_size=(64, 64), **tiny_overrides("mitplus"))
    out = tmp_path / "out"
    writer = ClassProbabilityWriter(out, ["x", "y"], saliency=True, network=net, saliency_method="rollout")
    with caplog.at_level(logging.INFO):
        _run(data, net, writer, (1, 64, 64), postprocessing=Activationsd("pred", softmax=True), summary_dir=out, failed=1)
    report = json.loads((out / "predictions.json").read_text())
    status = {c["case"].rsplit("/", 1)[-1]: c["status"] for c in report["cases"]}
    assert status["a.npy"] == status["b.npy"] == "ok" and report["num_failed"] == 1
    assert status["odd_size.npy"].startswith("failed: network forward: ") and "odd_size.npy: ValueError" in status["odd_size.npy"] and "(48, 48)" in status["odd_size.npy"]
    # the good cases match the network run on them alone
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(np.load(tmp_path / "a.npy"))[None, None]), 1)[0]
    got = next(c for c in report["cases"] if c["case"].endswith("a.npy"))["probabilities"]
    np.testing.assert_allclose([got["x"], got["y"]], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in (out / "saliency").glob("*.png")) == ["a.png", "b.png"]
    assert any("2 of 3 cases classified" in r.getMessage() for r in caplog.records)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["num_cases"], summary["num_ok"], summary["num_failed"]) == (3, 2, 1)
    assert [c["reason"] for c in summary["cases"] if c["status"] == "failed"] == [status["odd_size.npy"][len("failed: "):]]
    assert any("odd_size.npy" in r.getMessage() and "network forward" in r.getMessage() for r in caplog.records)


def test_batched_forward_failure_flags_only_the_failing_case(tmp_path):
    data = _write(tmp_path, {"p1.npy": np.full((8, 8), 1.0), "neg.npy": np.full((8, 8), -1.0), "p2.npy": np.full((8, 8), 2.0)})
    out = tmp_path / "out"
    evaluator = _run(data, FailsOnNegative(), ClassProbabilityWriter(out, ["x", "y"]), (1, 8, 8), batch_size=3)
    report = json.loads((out / "predictions.json").read_text())
    probs = {c["case"].rsplit("/", 1)[-1]: c["probabilities"] for c in report["cases"]}
    assert probs["neg.npy"] is None and report["num_failed"] == 1
    # raw scores (no activation): the retried cases keep their own outputs
    assert probs["p1.npy"] == pytest.approx({"x": 1.0, "y": -1.0}) and probs["p2.npy"] == pytest.approx({"x": 2.0, "y": -2.0})
    assert evaluator.state.iteration == 1


def test_segmentation_forward_failure_is_recorded_and_the_run_goes_on(tmp_path, caplog):
    rng = np.random.default_rng(1)
    data = _write(tmp_path, {"good.npy": rng.random((16, 32, 32)), "odd.npy": rng.random((16, 32, 24))})
    net = UniMissSegmentation(3, 1, 3, img_size=(16, 32, 32), **tiny_overrides("mitplus"))
    out = tmp_path / "out"
    writer = SegmentationWriter(out, LOAD)
    with caplog.at_level(logging.INFO):
        _run(data, net, writer, (1, 16, 32, 32), summary_dir=out, failed=1)
    assert [w["case"] for w in writer.written] == ["good"] and writer.written[0]["shape"] == [16, 32, 32]
    summary = json.loads((out / "summary.json").read_text())
    cases = {c["case"].rsplit("/", 1)[-1]: c for c in summary["cases"]}
    assert cases["good.npy"] == {"case": str(tmp_path / "good.npy"), "status": "ok", "reason": "",
                                 "input": str(tmp_path / "good.npy"), "output": str(out / "good_seg.nii.gz")}
    assert cases["odd.npy"]["status"] == "failed" and "output" not in cases["odd.npy"]
    assert "network forward" in cases["odd.npy"]["reason"] and "(16, 32, 24)" in cases["odd.npy"]["reason"]
    assert (out / "good_seg.nii.gz").is_file()
    assert any("1 of 2 cases ok" in r.getMessage() for r in caplog.records)


def test_errors_without_case_flags_still_raise():
    """An evaluator fed plain batches (no TolerantDataset) has nowhere to record a failure: it raises as before."""
    loader = DataLoader([{"image": torch.full((1, 4, 4), -1.0)}], batch_size=1)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=FailsOnNegative(),
                                    inferer=SimpleInferer(), val_handlers=[ClassProbabilityWriter("unused", ["x", "y"])])
    with pytest.raises(RuntimeError, match="negative input"):
        evaluator.run()


def test_inference_summary_records_a_forward_failure(tmp_path):
    data = _write(tmp_path, {"p1.npy": np.full((8, 8), 1.0), "neg.npy": np.full((8, 8), -1.0), "p2.npy": np.full((8, 8), 2.0)})
    out = tmp_path / "out"
    _run(data, FailsOnNegative(), InferenceSummary(out), (1, 8, 8), batch_size=2, failed=1)
    report = json.loads((out / "summary.json").read_text())
    status = {c["case"].rsplit("/", 1)[-1]: (c["status"], c["reason"]) for c in report["cases"]}
    assert status["p1.npy"] == status["p2.npy"] == ("ok", "")
    assert status["neg.npy"][0] == "failed" and status["neg.npy"][1].startswith("network forward: ")
    assert "neg.npy: RuntimeError: negative input" in status["neg.npy"][1]
    assert (report["num_cases"], report["num_ok"], report["num_failed"]) == (3, 2, 1)



def test_inference_summary_records_each_input_absolute(tmp_path, monkeypatch):
    # a case given relative to the directory the run started in: a report read from elsewhere must still find it
    monkeypatch.chdir(tmp_path)
    data = [{"image": item["image"].rsplit("/", 1)[-1]} for item in _write(tmp_path, {"p1.npy": np.ones((8, 8))})]
    _run(data, FailsOnNegative(), InferenceSummary("out"), (1, 8, 8))
    (case,) = json.loads((tmp_path / "out" / "summary.json").read_text())["cases"]
    assert (case["case"], case["input"]) == ("p1.npy", str(tmp_path / "p1.npy"))


def test_inference_summary_fails_the_run_when_no_case_worked(tmp_path):
    data = _write(tmp_path, {"neg1.npy": np.full((8, 8), -1.0), "neg2.npy": np.full((8, 8), -2.0)})
    with pytest.raises(RuntimeError, match=r"no case worked \(2 failed"):
        _run(data, FailsOnNegative(), ClassProbabilityWriter(tmp_path / "out", ["x", "y"]), (1, 8, 8),
             summary_dir=tmp_path / "out")
    # the summary that says why is written before the run fails
    report = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert report["num_ok"] == 0 and all(c["status"] == "failed" for c in report["cases"])


class _NaNForNegative(nn.Module):
    """Class scores (mean, -mean), NaN for a case whose mean is negative: a writer, not the forward, finds it."""

    def forward(self, x):
        means = x.flatten(1).mean(1)
        means = torch.where(means < 0, torch.nan, means)
        return torch.stack([means, -means], 1)


def test_a_writer_failure_reaches_the_summary(tmp_path):
    data = _write(tmp_path, {"p.npy": np.full((8, 8), 1.0), "nan.npy": np.full((8, 8), -1.0)})
    out = tmp_path / "out"
    _run(data, _NaNForNegative(), ClassProbabilityWriter(out, ["x", "y"]), (1, 8, 8), summary_dir=out, failed=1)
    cases = {c["case"].rsplit("/", 1)[-1]: c for c in json.loads((out / "summary.json").read_text())["cases"]}
    assert cases["p.npy"]["status"] == "ok"
    assert cases["nan.npy"]["status"] == "failed" and "non-finite" in cases["nan.npy"]["reason"]


def test_a_failed_saliency_map_fails_its_case_with_none_of_its_outputs(tmp_path, monkeypatch, caplog):
    """The map was asked for and is missing (here a write that fails, as on a full disk): the case is counted failed
    with the reason, the run raises at its end, and the case keeps no output, its probabilities neither (all or
    none), while the other case is whole."""
    import unimiss_monai.visualize.saliency as saliency

    real = saliency.saliency_png

    def fails_for_b(image, cam, path, *args, **kwargs):
        if path.name == "b.png":
            raise OSError(28, "No space left on device")
        return real(image, cam, path, *args, **kwargs)

    monkeypatch.setattr(saliency, "saliency_png", fails_for_b)
    rng = np.random.default_rng(2)
    data = _write(tmp_path, {"a.npy": rng.random((64, 64)), "b.npy": rng.random((64, 64))})
    net = UniMissClassifier(2, 1, 2, img_size=(64, 64), **tiny_overrides("mitplus"))
    out = tmp_path / "out"
    writer = ClassProbabilityWriter(out, ["x", "y"], saliency=True, network=net)
    with caplog.at_level(logging.INFO):
        _run(data, net, writer, (1, 64, 64), postprocessing=Activationsd("pred", softmax=True), summary_dir=out, failed=1)
    cases = {c["case"].rsplit("/", 1)[-1]: c for c in json.loads((out / "predictions.json").read_text())["cases"]}
    assert cases["a.npy"]["status"] == "ok" and cases["a.npy"]["saliency"] == str(out / "saliency" / "a.png")
    assert cases["b.npy"]["status"].startswith("failed: no saliency map: ") and "No space left" in cases["b.npy"]["status"]
    assert cases["b.npy"]["saliency"] is None and cases["b.npy"]["probabilities"] is None
    assert cases["b.npy"]["prediction"] is None and sum(cases["a.npy"]["probabilities"].values()) == pytest.approx(1.0)
    assert [p.name for p in (out / "saliency").glob("*.png")] == ["a.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert [c["reason"] for c in summary["cases"] if c["status"] == "failed"] == [cases["b.npy"]["status"][len("failed: "):]]
    assert any("1 of 2 cases classified" in r.getMessage() for r in caplog.records)
    import csv

    rows = {r["case"]: r for r in csv.DictReader((out / "predictions.csv").open())}
    row = rows[str(tmp_path / "b.npy")]
    assert row["status"] == cases["b.npy"]["status"] and row["prob_x"] == row["prob_y"] == row["prediction"] == ""
