"""Inference past a case whose network forward fails (an input size the network cannot take, a runtime error):
the writers record it as failed with its file name, the other cases are written, and the summary counts it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer
from monai.transforms import Activationsd, Compose, EnsureTyped, LoadImaged
from torch import nn

from unimiss_monai.data.xray import InferenceSummary
from unimiss_monai.engines.classification_inference import ClassProbabilityWriter
from unimiss_monai.engines.tolerant_inference import TolerantDataset
from unimiss_monai.engines.segmentation_inference import SegmentationWriter
from unimiss_monai.networks import UniMissClassifier, UniMissSegmentation, tiny_overrides

LOAD = Compose([LoadImaged("image", ensure_channel_first=True, image_only=True), EnsureTyped("image", dtype=torch.float32)])


def _write(tmp_path, arrays: dict[str, np.ndarray]) -> list[dict]:
    data = []
    for name, array in arrays.items():
        np.save(tmp_path / name, array.astype(np.float32))
        data.append({"image": str(tmp_path / name)})
    return data


def _run(data, network, handler, placeholder, batch_size=1, postprocessing=None):
    loader = DataLoader(TolerantDataset(data, LOAD, placeholder), batch_size=batch_size, num_workers=0)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=loader, network=network.eval(), inferer=SimpleInferer(),
        postprocessing=postprocessing, val_handlers=[handler],
    )
    evaluator.run()
    return evaluator


def test_classifier_forward_failure_is_recorded_and_the_run_goes_on(tmp_path, capsys, caplog):
    rng = np.random.default_rng(0)
    data = _write(tmp_path, {"a.npy": rng.random((64, 64)), "odd_size.npy": rng.random((48, 48)), "b.npy": rng.random((64, 64))})
    net = UniMissClassifier(2, 1, 2, img_size=(64, 64), **tiny_overrides("mitplus"))
    out = tmp_path / "out"
    writer = ClassProbabilityWriter(out, ["x", "y"], saliency=True, network=net, saliency_method="rollout")
    with caplog.at_level(logging.ERROR):
        _run(data, net, writer, (1, 64, 64), postprocessing=Activationsd("pred", softmax=True))
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
    assert "2 of 3 cases classified" in capsys.readouterr().out
    assert any("odd_size.npy" in r.getMessage() and "network forward" in r.getMessage() for r in caplog.records)


class _FailsOnNegative(nn.Module):
    """Class scores (mean, -mean); raises a RuntimeError for any case whose mean is negative."""

    def forward(self, x):
        means = x.flatten(1).mean(1)
        if (means < 0).any():
            raise RuntimeError("negative input")
        return torch.stack([means, -means], 1)


def test_batched_forward_failure_flags_only_the_failing_case(tmp_path):
    data = _write(tmp_path, {"p1.npy": np.full((8, 8), 1.0), "neg.npy": np.full((8, 8), -1.0), "p2.npy": np.full((8, 8), 2.0)})
    out = tmp_path / "out"
    evaluator = _run(data, _FailsOnNegative(), ClassProbabilityWriter(out, ["x", "y"]), (1, 8, 8), batch_size=3)
    report = json.loads((out / "predictions.json").read_text())
    probs = {c["case"].rsplit("/", 1)[-1]: c["probabilities"] for c in report["cases"]}
    assert probs["neg.npy"] is None and report["num_failed"] == 1
    # raw scores (no activation): the retried cases keep their own outputs
    assert probs["p1.npy"] == pytest.approx({"x": 1.0, "y": -1.0}) and probs["p2.npy"] == pytest.approx({"x": 2.0, "y": -2.0})
    assert evaluator.state.iteration == 1


def test_segmentation_forward_failure_is_recorded_and_the_run_goes_on(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = _write(tmp_path, {"good.npy": rng.random((16, 32, 32)), "odd.npy": rng.random((16, 32, 24))})
    net = UniMissSegmentation(3, 1, 3, img_size=(16, 32, 32), **tiny_overrides("mitplus"))
    out = tmp_path / "out"
    _run(data, net, SegmentationWriter(out, LOAD, class_names=["a", "b"]), (1, 16, 32, 32))
    summary = json.loads((out / "summary.json").read_text())
    assert [w["case"] for w in summary["written"]] == ["good.npy"] and summary["written"][0]["shape"] == [16, 32, 32]
    assert len(summary["failed"]) == 1 and summary["failed"][0]["case"].endswith("odd.npy")
    assert "network forward" in summary["failed"][0]["error"] and "(16, 32, 24)" in summary["failed"][0]["error"]
    assert (out / "good.npy_seg.nii.gz").is_file()
    assert "1 written, 1 failed" in capsys.readouterr().out


def test_errors_without_case_flags_still_raise():
    """An evaluator fed plain batches (no TolerantDataset) has nowhere to record a failure: it raises as before."""
    loader = DataLoader([{"image": torch.full((1, 4, 4), -1.0)}], batch_size=1)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=_FailsOnNegative(),
                                    inferer=SimpleInferer(), val_handlers=[ClassProbabilityWriter("unused", ["x", "y"])])
    with pytest.raises(RuntimeError, match="negative input"):
        evaluator.run()


def test_xray_inference_summary_records_a_forward_failure(tmp_path, capsys):
    data = _write(tmp_path, {"p1.npy": np.full((8, 8), 1.0), "neg.npy": np.full((8, 8), -1.0), "p2.npy": np.full((8, 8), 2.0)})
    out = tmp_path / "out"
    _run(data, _FailsOnNegative(), InferenceSummary(out), (1, 8, 8), batch_size=2)
    report = json.loads((out / "inference_summary.json").read_text())
    status = {c["case"].rsplit("/", 1)[-1]: c["status"] for c in report["cases"]}
    assert status["p1.npy"] == status["p2.npy"] == "ok"
    assert status["neg.npy"].startswith("failed: network forward: ") and "neg.npy: RuntimeError: negative input" in status["neg.npy"]
