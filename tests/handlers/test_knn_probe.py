"""KNNProbe on a tiny engine: its history file, the raw-voxel baseline with overlapping crops and groups kept apart,
the stage maps probed beside the CLS, the embedding passes, and a probe that has no allowed neighbour."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from torch import nn

from unimiss_monai.handlers import KNNProbe, knn_accuracy
from unimiss_monai.handlers.knn_probe import knn_predict


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
    # epoch 0: the untrained backbone, probed once before the first iteration
    assert [e["epoch"] for e in saved] == [0, 2, 4] and saved == probe.history and saved[0]["iteration"] == 0
    assert saved[1]["num_items"] == 6 and saved[1]["num_classes"] == 2 and saved[1]["k"] == 3
    assert backbone.training and backbone.calls_in_training == 0 and not any(backbone.grad_enabled)
    # a resumed run keeps earlier epochs, replaces the ones it redoes and does not re-probe "epoch 0"
    resumed = KNNProbe(HalfMeans(), probe_datalist, every_n_epochs=2, k=3, history_path=history)
    engine2 = Engine(lambda e, b: None)
    resumed.attach(engine2)
    engine2.state.epoch, engine2.state.iteration, engine2.state.max_epochs = 3, 6, 4
    engine2.run([0, 1], max_epochs=4)
    assert [e["epoch"] for e in json.loads(history.read_text())] == [0, 2, 4]


def test_a_users_file_at_the_history_path_stops_the_run_before_it_trains(probe_datalist, tmp_path):
    history = tmp_path / "knn.json"
    history.write_text("[]")  # the user's, not recorded as written by this package
    engine = Engine(lambda e, b: None)
    # no probe at start: the check before training refuses it, not the first write
    KNNProbe(HalfMeans(), probe_datalist, k=3, history_path=history, probe_at_start=False).attach(engine)
    with pytest.raises(FileExistsError, match="knn.json exists and was not written by unimiss_monai"):
        engine.run([0, 1], max_epochs=2)
    assert engine.state.iteration == 0 and history.read_text() == "[]"
    # a history in the probe's format, as versions before the record of written files left it, is continued
    earlier = [{"epoch": 1, "iteration": 2, "knn_accuracy": 0.5}]
    history.write_text(json.dumps(earlier))
    engine = Engine(lambda e, b: None)
    KNNProbe(HalfMeans(), probe_datalist, k=3, history_path=history, probe_at_start=False).attach(engine)
    engine.state.epoch, engine.state.iteration, engine.state.max_epochs = 1, 2, 2
    engine.run([0, 1], max_epochs=2)
    assert [e["epoch"] for e in json.loads(history.read_text())] == [1, 2]


def test_handler_agrees_with_direct_computation(tmp_path):
    # no class structure: the handler's value must equal knn_accuracy on the backbone's own outputs
    rng = np.random.default_rng(1)
    items = []
    for i in range(10):
        np.save(tmp_path / f"r{i}.npy", rng.normal(size=(6, 6)).astype(np.float32))
        items.append({"image": str(tmp_path / f"r{i}.npy"), "label": i % 3})
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(36, 4))
    probe = KNNProbe(backbone, items, k=4, temperature=0.5, batch_size=3, probe_at_start=False)
    engine = Engine(lambda e, b: None)
    probe.attach(engine)
    engine.run([0], max_epochs=1)
    assert [e["epoch"] for e in probe.history] == [1]
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


def test_overlapping_crops_no_longer_inflate_the_pixel_baseline(tmp_path, caplog):
    # One "scan" of white noise: nothing in the content tells organ "a" from organ "b". Each organ has two crops
    # that share half their columns, plus one crop on its own. On raw pixels the shared half makes each twin the
    # other's nearest neighbour (cosine about 0.5 against about 0 for disjoint noise), so plain leave-one-out
    # scores the four twins right whatever the content: the inflated baseline. Excluding neighbours whose box
    # overlaps the query's leaves only disjoint crops, which carry no label information.
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(8, 64)).astype(np.float32)
    starts = [("a", 0), ("a", 4), ("b", 20), ("b", 24), ("a", 40), ("b", 52)]
    items = []
    for i, (label, x) in enumerate(starts):
        np.save(tmp_path / f"c{i}.npy", volume[:, x : x + 8])
        items.append({"image": str(tmp_path / f"c{i}.npy"), "label": label, "case": "ct0", "group": "real", "box": [[0, x], [8, x + 8]]})
    pixels = torch.from_numpy(np.stack([volume[:, x : x + 8].ravel() for _, x in starts]))
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    assert knn_predict(pixels, labels, k=1)[:4].tolist() == [0, 0, 1, 1]  # each twin finds its twin
    plain = KNNProbe(nn.Flatten(), items, k=1, exclude="self", probe_at_start=False)
    plain._load()
    assert plain.pixel_baseline == pytest.approx(knn_accuracy(pixels, labels, k=1)) and plain.pixel_baseline >= 4 / 6
    probe = KNNProbe(nn.Flatten(), items, k=1, probe_at_start=False)
    with caplog.at_level(logging.WARNING):
        probe._load()
    exclude = torch.zeros(6, 6, dtype=torch.bool)
    exclude[0, 1] = exclude[1, 0] = exclude[2, 3] = exclude[3, 2] = True  # the twins, and nothing else, overlap
    assert torch.equal(probe._exclude, exclude) and not [r for r in caplog.records if r.name.startswith("unimiss_monai")]
    assert probe.pixel_baseline == pytest.approx(knn_accuracy(pixels, labels, k=1, exclude=exclude))
    assert probe.pixel_baseline < plain.pixel_baseline


def test_groups_are_kept_apart_and_reported(tmp_path):
    # group "phantom" crops would be everyone's nearest neighbour (identical bright images): kept apart, the real
    # group is scored on its own, and each group has its own baseline
    items = []
    for i, (group, label, value) in enumerate([("real", "a", 1.0), ("real", "a", 1.1), ("real", "b", -1.0), ("real", "b", -1.2),
                                               ("phantom", "a", 5.0), ("phantom", "b", 5.5), ("phantom", "a", -5.0)]):
        img = np.full((4, 4), value, np.float32)
        img[0, 0] = 3.0  # not all images are multiples of each other
        np.save(tmp_path / f"g{i}.npy", img)
        items.append({"image": str(tmp_path / f"g{i}.npy"), "label": label, "case": f"{group}{i}", "group": group, "box": [[0, 0], [4, 4]]})
    probe = KNNProbe(nn.Flatten(), items, k=1, probe_at_start=False)
    engine = Engine(lambda e, b: None)
    probe.attach(engine)
    engine.run([0], max_epochs=1)
    pixels = torch.stack([torch.from_numpy(np.load(it["image"])).flatten() for it in items])
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 0])
    real = knn_accuracy(pixels[:4], labels[:4], k=1)
    phantom = knn_accuracy(pixels[4:], labels[4:], k=1)
    assert real == 1.0 and phantom < 1.0
    entry = probe.history[-1]
    assert entry["groups"]["real"]["pixel_baseline"] == pytest.approx(real)
    assert entry["groups"]["phantom"]["pixel_baseline"] == pytest.approx(phantom)
    assert entry["pixel_baseline"] == pytest.approx((4 * real + 3 * phantom) / 7)


def test_missing_case_metadata_and_single_case_classes_are_said(tmp_path, caplog):
    rng = np.random.default_rng(2)
    items = []
    for i, (case, label) in enumerate([("ct0", "a"), ("ct0", "b"), ("ct1", "a"), ("ct1", "a")]):
        np.save(tmp_path / f"m{i}.npy", rng.normal(size=(4, 4)).astype(np.float32))
        items.append({"image": str(tmp_path / f"m{i}.npy"), "label": label, "case": case, "box": [[0, 0], [4, 4]]})
    with caplog.at_level(logging.WARNING):
        KNNProbe(nn.Flatten(), items, k=1)._load()
    assert "['b']" in caplog.text and "one case only" in caplog.text
    caplog.clear()
    bare = [{"image": it["image"], "label": it["label"]} for it in items]
    with caplog.at_level(logging.WARNING):
        KNNProbe(nn.Flatten(), bare, k=1)._load()
    assert "lack 'case' and 'box'" in caplog.text and "--overwrite" in caplog.text


class ConstantClsWithMaps(nn.Module):
    """Toy encoder: a CLS that is the same for every input (as after instance norms and pooling), and four "stage
    maps": the image itself at stage 1, its negative at stage 2, a constant map at stage 3 and a 2x-pooled image at
    stage 4, behind one stem output (like MiT)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.ones(x.shape[0], 3) * self.w

    def forward_intermediates(self, x):
        b = x.shape[0]
        pooled = torch.nn.functional.avg_pool2d(x, 2)
        feats = [x * 0 + 1, x, -x, torch.ones_like(x), pooled]
        return feats, torch.ones(b, 3)


def test_stage_maps_are_probed_beside_the_cls(probe_datalist, tmp_path):
    history = tmp_path / "knn.json"
    probe = KNNProbe(ConstantClsWithMaps(), probe_datalist, k=3, history_path=history)
    engine = Engine(lambda e, b: None)
    probe.attach(engine)
    engine.run([0], max_epochs=1)
    entry = json.loads(history.read_text())[-1]
    # the CLS is the same for every image: every vote ties and goes to the smaller label index, i.e. half right
    assert entry["knn_accuracy"] == pytest.approx(0.5)
    maps = entry["feature_maps"]
    # the last four features are the stages: the stem output (first) is not one of them
    assert list(maps) == ["stage1", "stage2", "stage3", "stage4"]
    # stages 1 and 4 keep where the bright half is, as the raw voxels do; a negated map has the same cosines
    assert maps["stage1"] == maps["stage2"] == maps["stage4"] == probe.pixel_baseline == 1.0
    assert maps["stage3"] == pytest.approx(0.5)
    assert engine.state.metrics["knn_accuracy_stage1"] == 1.0 and engine.state.metrics["knn_accuracy"] == pytest.approx(0.5)
    # stage maps larger than the limit are left out, with a warning; without forward_intermediates there are none
    small = KNNProbe(ConstantClsWithMaps(), probe_datalist, k=3, max_feature_bytes=6 * 16 * 4)
    small._load()
    assert list(small.embed_feature_maps()) == ["stage4"]
    assert not KNNProbe(HalfMeans(), probe_datalist).feature_maps
    assert not KNNProbe(ConstantClsWithMaps(), probe_datalist, feature_maps=False).feature_maps


def test_stage_maps_from_a_backbone_that_returns_a_list_of_maps(probe_datalist):
    # the slice encoder's contract: forward_intermediates returns the maps alone
    class ListMaps(ConstantClsWithMaps):
        def forward_intermediates(self, x):
            return super().forward_intermediates(x)[0]

    probe = KNNProbe(ListMaps(), probe_datalist, k=3)
    probe._load()
    maps = probe.embed_feature_maps()
    assert list(maps) == ["stage1", "stage2", "stage3", "stage4"] and maps["stage4"].shape == (6, 16)


@pytest.mark.parametrize("variant", ["mit_tiny", "mitplus"])
def test_one_backbone_pass_gives_what_two_passes_give(variant, tmp_path):
    """MiT and MiT+ hand the probe the embedding and the stage maps from one encoder pass per batch: the same
    embeddings and maps as ``embed()`` and ``embed_feature_maps()`` with their two passes, in half the encoder calls."""
    from unimiss_monai.networks import build_backbone, tiny_overrides

    rng = np.random.default_rng(1)
    items = []
    for i in range(6):
        np.save(tmp_path / f"p{i}.npy", rng.uniform(0, 1, (32, 64)).astype(np.float32))
        items.append({"image": str(tmp_path / f"p{i}.npy"), "label": i % 2})
    torch.manual_seed(0)
    backbone = build_backbone(variant, spatial_dims=2, in_channels=1, **tiny_overrides(variant))
    probe = KNNProbe(backbone, items, k=3, batch_size=4)
    probe._load()
    calls = []
    encoder_pass = backbone.encoder.forward_intermediates
    backbone.encoder.forward_intermediates = lambda x: calls.append(len(x)) or encoder_pass(x)
    embeddings, maps = probe.embed_with_feature_maps()
    assert calls == [4, 2]
    separate_embeddings, separate_maps = probe.embed(), probe.embed_feature_maps()
    assert calls == [4, 2] * 3
    assert embeddings.shape == separate_embeddings.shape and torch.allclose(embeddings, separate_embeddings, atol=1e-6)
    assert list(maps) == list(separate_maps) == ["stage1", "stage2", "stage3", "stage4"]
    assert all(torch.allclose(maps[n], separate_maps[n], atol=1e-6) for n in maps)


def test_images_of_mixed_shapes_are_embedded_in_passes_of_one_shape(tmp_path):
    """Consecutive probe images of one shape share a pass (up to ``batch_size``), a new shape starts a new pass, and
    each embedding is the one the image gets on its own."""
    rng = np.random.default_rng(2)
    shapes = [(8, 8), (8, 8), (6, 10), (6, 10), (6, 10), (6, 10), (8, 8)]
    items = []
    for i, shape in enumerate(shapes):
        np.save(tmp_path / f"m{i}.npy", rng.normal(size=shape).astype(np.float32))
        items.append({"image": str(tmp_path / f"m{i}.npy"), "label": i % 2})
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3)
    passes = []
    backbone = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone.register_forward_pre_hook(lambda module, args: passes.append(tuple(args[0].shape)))
    probe = KNNProbe(backbone, items, k=3, batch_size=3)
    probe._load()
    embeddings = probe.embed()
    assert passes == [(2, 1, 8, 8), (3, 1, 6, 10), (1, 1, 6, 10), (1, 1, 8, 8)]
    with torch.no_grad():
        alone = torch.cat([backbone(torch.from_numpy(np.load(it["image"]))[None, None]) for it in items])
    assert torch.allclose(embeddings, torch.nn.functional.normalize(alone, dim=1), atol=1e-6)
    assert probe.embed_feature_maps() == {}  # maps of different sizes are not compared


@pytest.mark.parametrize("exclude, box, groups", [
    ("overlap", None, "rrrr"),                      # one case, no boxes: every pair may overlap
    ("case", [[0, 0], [4, 4]], "rrrr"),             # one case, leave-one-case-out
    ("self", None, "abcd"),                         # every item alone in its group
])
def test_a_probe_where_no_item_has_an_allowed_neighbour_is_skipped(tmp_path, caplog, exclude, box, groups):
    # nothing may vote for anyone: the probe says why, once, and stays off; the run goes on
    rng = np.random.default_rng(3)
    items = []
    for i, group in enumerate(groups):
        np.save(tmp_path / f"n{i}.npy", rng.normal(size=(4, 4)).astype(np.float32))
        item = {"image": str(tmp_path / f"n{i}.npy"), "label": "ab"[i % 2], "case": "ct0", "group": group}
        items.append(item if box is None else {**item, "box": box})
    history = tmp_path / "knn.json"
    probe = KNNProbe(ConstantClsWithMaps(), items, k=3, exclude=exclude, history_path=history)
    engine = Engine(lambda e, b: None)
    probe.attach(engine)
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.handlers.knn_probe"):
        engine.run([0, 1], max_epochs=3)
    assert engine.state.epoch == 3
    said = [r.getMessage() for r in caplog.records if "allowed neighbour" in r.getMessage()]
    assert len(said) == 1 and "k-NN probe off" in said[0] and f"exclude={exclude!r}" in said[0] and "exclude='self'" in said[0]
    assert not any(name.startswith("knn_accuracy") for name in engine.state.metrics)
    assert probe.history == [] and not history.exists()
