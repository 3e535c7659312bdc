"""KNNProbe: the weighted k-NN accuracy against hand computations, and the handler on a tiny engine."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from torch import nn

from unimiss_monai.handlers import KNNProbe, knn_accuracy


def _angles(degrees):
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


def test_separable_clusters_score_one():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 5
    labels = torch.arange(3).repeat_interleave(4)
    emb = centres[labels] + 0.1 * torch.randn(12, 8, generator=g)
    assert knn_accuracy(emb, labels, k=3) == 1.0
    # k larger than N - 1 is capped, and votes stay dominated by the own cluster at a low temperature
    assert knn_accuracy(emb, labels, k=50, temperature=0.01) == 1.0


# unit vectors at 0, 10, 25, 90 degrees with labels A, A, B, B; cosines: 0-10 .985, 0-25 .906, 0-90 0,
# 10-25 .966, 10-90 .174, 25-90 .423
CRAFTED = _angles([0.0, 10.0, 25.0, 90.0]), torch.tensor([0, 0, 1, 1])


def test_crafted_case_nearest_neighbour():
    # k=1: 0->10 (A, right), 10->0 (A, right), 25->10 (A, wrong), 90->25 (B, right)
    assert knn_accuracy(*CRAFTED, k=1) == pytest.approx(0.75)


def test_crafted_case_temperature_weighting():
    # k=3 (all others). T=1: 0 gets A e^.985=2.68 < B e^.906+e^0=3.47 (wrong); 10 gets A 2.68 < B e^.966+e^.174=3.88
    # (wrong); 25 gets A from both A neighbours (wrong); 90 gets B e^.423=1.53 < A e^.174+e^0=2.19 (wrong) -> 0.
    assert knn_accuracy(*CRAFTED, k=3, temperature=1.0) == pytest.approx(0.0)
    # T=0.07 the most similar neighbour dominates each vote: the k=1 answers again -> 0.75
    assert knn_accuracy(*CRAFTED, k=3, temperature=0.07) == pytest.approx(0.75)


def test_scale_invariance_and_bad_input():
    emb, labels = CRAFTED
    assert knn_accuracy(emb * torch.tensor([[3.0], [0.5], [7.0], [2.0]], dtype=torch.float64), labels, k=1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least 2 samples"):
        knn_accuracy(emb[:1], labels[:1])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        knn_accuracy(emb, labels[:3])


class HalfMeans(nn.Module):
    """Toy backbone: (B, 1, H, W) -> (B, 2) means of the top and bottom halves (plus a trainable scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.calls_in_training = 0
        self.grad_enabled = []

    def forward(self, x):
        self.calls_in_training += int(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        h = x.shape[2] // 2
        return torch.stack([x[:, 0, :h].mean((1, 2)), x[:, 0, h:].mean((1, 2))], dim=1) * self.scale, None


@pytest.fixture()
def probe_datalist(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for i in range(6):
        label = ["liver", "spleen"][i % 2]
        img = rng.uniform(0, 0.1, (8, 8)).astype(np.float32)
        img[(slice(0, 4) if label == "liver" else slice(4, 8)), :] += 1.0  # liver: bright top, spleen: bright bottom
        np.save(tmp_path / f"p{i}.npy", img)
        items.append({"image": f"p{i}.npy", "label": label})
    items.append({"image": "missing.npy", "label": "liver"})
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"ct": [], "probe": items}))
    return path


def test_handler_on_tiny_engine(probe_datalist, tmp_path, caplog):
    backbone = HalfMeans()
    history = tmp_path / "out" / "knn.json"
    probe = KNNProbe(backbone, probe_datalist, every_n_epochs=2, k=3, history_path=history)
    engine = Engine(lambda e, b: None)
    probe.attach(engine)
    with caplog.at_level(logging.WARNING):
        engine.run([0, 1], max_epochs=4)
    assert "missing.npy" in caplog.text  # the bad item is named and skipped, the others are probed
    assert engine.state.metrics["knn_accuracy"] == 1.0
    saved = json.loads(history.read_text())
    assert [e["epoch"] for e in saved] == [2, 4] and saved == probe.history
    assert saved[0]["num_items"] == 6 and saved[0]["num_classes"] == 2 and saved[0]["k"] == 3
    assert backbone.training and backbone.calls_in_training == 0 and not any(backbone.grad_enabled)
    # a resumed run keeps earlier epochs and replaces the ones it redoes
    resumed = KNNProbe(HalfMeans(), probe_datalist, every_n_epochs=2, k=3, history_path=history)
    engine2 = Engine(lambda e, b: None)
    resumed.attach(engine2)
    engine2.state.epoch, engine2.state.max_epochs = 3, 4
    engine2.run([0, 1], max_epochs=4)
    assert [e["epoch"] for e in json.loads(history.read_text())] == [2, 4]


def test_handler_agrees_with_direct_computation(tmp_path):
    # no class structure: the handler's value must equal knn_accuracy on the backbone's own outputs
    rng = np.random.default_rng(1)
    items = []
    for i in range(10):
        np.save(tmp_path / f"r{i}.npy", rng.normal(size=(6, 6)).astype(np.float32))
        items.append({"image": str(tmp_path / f"r{i}.npy"), "label": i % 3})
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(36, 4))
    probe = KNNProbe(backbone, items, k=4, temperature=0.5, batch_size=3)
    engine = Engine(lambda e, b: None)
    probe.attach(engine)
    engine.run([0], max_epochs=1)
    with torch.no_grad():
        emb = backbone(torch.stack([torch.from_numpy(np.load(it["image"]))[None] for it in items]))
    expected = knn_accuracy(emb, torch.tensor([it["label"] for it in items]), k=4, temperature=0.5)
    assert engine.state.metrics["knn_accuracy"] == pytest.approx(expected)
    assert probe.class_names == [0, 1, 2]
    # the raw-voxel reference is the same k-NN on the flattened images, reported beside the backbone's accuracy
    pixels = torch.stack([torch.from_numpy(np.load(it["image"])).flatten() for it in items])
    baseline = knn_accuracy(pixels, torch.tensor([it["label"] for it in items]), k=4, temperature=0.5)
    assert probe.pixel_baseline == pytest.approx(baseline) and probe.history[-1]["pixel_baseline"] == pytest.approx(baseline)


def test_no_probe_section_skips_once(tmp_path, caplog):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"ct": [{"image": "a.nii.gz"}]}))
    probe = KNNProbe(HalfMeans(), path, history_path=tmp_path / "knn.json")
    engine = Engine(lambda e, b: None)
    with caplog.at_level(logging.INFO, logger="unimiss_monai.handlers.knn_probe"):
        probe.attach(engine)
        engine.run([0], max_epochs=3)
    assert caplog.text.count("k-NN probe off") == 1
    assert "knn_accuracy" not in engine.state.metrics and not (tmp_path / "knn.json").exists()
