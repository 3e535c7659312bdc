"""The CT segmentation bundle's CPU overlay (``configs/inference_cpu.yaml``) and ``bench-infer``: the overlay parses
on top of ``inference.json``, and on the same weights its fast path labels a (tiny) volume as the reference path does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from unimiss_monai.benchmarks.inference import (
    FAST, OPENVINO, REFERENCE, bench_infer, count_windows, dice_per_class, load_paths,
)
from unimiss_monai.inferers import MirrorTTAInferer
from unimiss_monai.inferers.autocast import AutocastInferer, cpu_has_fast_bfloat16
from unimiss_monai.inferers.openvino import OpenVINOInferer, openvino_available

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unimiss_ct_segmentation"
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed (extra [openvino])")

# the smoke network on windows of 16x64x64: a whole "CT" takes about a second
SMOKE = {"network_def#preset": "smoke", "roi_size": [16, 64, 64]}


def test_overlay_parses_on_top_of_inference_json():
    parser = load_paths(BUNDLE, "inference_cpu.yaml", "cpu")
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, MirrorTTAInferer) and isinstance(inferer.inferer, AutocastInferer)
    sw = inferer.inferer.inferer
    assert isinstance(sw, SlidingWindowInferer) and sw.sw_batch_size == 1 and sw.overlap == 0.5 and sw.mode == "gaussian"
    assert inferer.inferer.dtype == torch.bfloat16 and inferer.inferer.device_type == "cpu"
    assert inferer.inferer.enabled == cpu_has_fast_bfloat16()
    assert parser.get_parsed_content("num_workers") == 0
    # everything else is inference.json's: the same network, preprocessing and writer
    reference = load_paths(BUNDLE, None, "cpu")
    for key in ("network_def", "preprocessing", "handlers", "roi_size", "pixdim"):
        assert parser.get(key) == reference.get(key), key
    forced = load_paths(BUNDLE, "inference_cpu.yaml", "cpu", {"cpu_bfloat16": "false"})
    assert forced.get_parsed_content("inferer").inferer.enabled is False
    # the fewer-windows overlay on top changes the overlap and nothing else: a quarter along the slices, a tenth
    # in-plane, 24 windows on the sample CT's grid instead of 72
    fast = load_paths(BUNDLE, "inference_cpu.yaml,inference_cpu_fast.yaml", "cpu")
    assert tuple(fast.get_parsed_content("inferer").inferer.inferer.overlap) == (0.25, 0.1, 0.1)
    assert count_windows((133, 241, 241), fast.get_parsed_content("roi_size"), fast.get_parsed_content("sw_overlap")) == 24
    assert count_windows((133, 241, 241), parser.get_parsed_content("roi_size"), parser.get_parsed_content("sw_overlap")) == 72
    assert {k: v for k, v in fast.get().items() if k != "sw_overlap"} == {k: v for k, v in parser.get().items() if k != "sw_overlap"}


@needs_openvino
def test_openvino_overlay_replaces_the_autocast_and_nothing_else():
    """Merged after inference_cpu.yaml: OpenVINO runs the sliding window's network calls, in bfloat16 exactly where the
    CPU overlay would autocast (``--cpu_bfloat16`` decides both); every other id is the CPU overlay's."""
    cpu = load_paths(BUNDLE, "inference_cpu.yaml", "cpu")
    parser = load_paths(BUNDLE, "inference_cpu.yaml,inference_openvino.yaml", "cpu")
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, MirrorTTAInferer) and isinstance(inferer.inferer, OpenVINOInferer)
    assert isinstance(inferer.inferer.inferer, SlidingWindowInferer) and inferer.inferer.inferer.sw_batch_size == 1
    assert inferer.inferer.precision == ("bf16" if cpu_has_fast_bfloat16() else "f32")
    forced = load_paths(BUNDLE, "inference_cpu.yaml,inference_openvino.yaml", "cpu", {"cpu_bfloat16": "false"})
    assert forced.get_parsed_content("inferer").inferer.precision == "f32"
    assert {k: v for k, v in parser.get().items() if k != "inferer"} == {k: v for k, v in cpu.get().items() if k != "inferer"}


@needs_openvino
def test_openvino_row_labels_agree_with_the_reference(tmp_path):
    """``bench-infer --openvino`` (run as a user runs it, in a process of its own so that OpenVINO never loads into the
    suite's): a third row of ours on the same weights, float32 through OpenVINO, labels a 20x72x72 volume as the
    reference does; its warm-up (tracing and compiling) is reported apart from its timing."""
    out = tmp_path / "bench.json"
    overrides = json.dumps({**SMOKE, "cpu_bfloat16": False})
    done = subprocess.run([sys.executable, "-m", "unimiss_monai", "bench-infer", "--shape", "20,72,72", "--noswinunetr",
                           "--openvino", "--overrides", overrides, "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    row = result["results"][OPENVINO]
    assert row["inferer"] == "MirrorTTAInferer > OpenVINOInferer (f32) > SlidingWindowInferer"
    assert row["windows"] == result["results"][FAST]["windows"] and row["warmup_s"] > 0
    assert f"{OPENVINO} " in done.stdout and f"vs {FAST} " in done.stdout and "warm-up" in done.stdout
    agreement = result["agreement_reference_vs_openvino"]
    assert agreement["voxels_equal"] >= 0.999 and min(agreement["dice_per_class"].values()) >= 0.99, agreement


def test_base_overlay_goes_into_both_paths_before_the_fast_overlay():
    """``base`` (e.g. the demo network) reaches both paths; the fast overlay, merged after it, still decides how the
    fast path runs."""
    demo_reference = load_paths(BUNDLE, None, "cpu", base="demo.yaml")
    demo_fast = load_paths(BUNDLE, "inference_cpu.yaml", "cpu", base=["demo.yaml"])
    for parser in (demo_reference, demo_fast):
        assert parser.get_parsed_content("roi_size") == [16, 96, 96]
        assert parser.get("network_def#embed_dims") == [16, 32, 32, 64]
    assert demo_reference.get_parsed_content("sw_batch_size") == 4  # demo.yaml's
    assert demo_fast.get_parsed_content("sw_batch_size") == 1  # inference_cpu.yaml's, merged later
    assert load_paths(BUNDLE, None, "cpu").get("network_def#embed_dims") != [16, 32, 32, 64]


def _num_classes() -> int:
    return int(load_paths(BUNDLE, None, "cpu").get_parsed_content("num_classes"))


def _agrees(agreement: dict) -> bool:
    """The agreement this module asks of two paths on the same weights."""
    return agreement["voxels_equal"] >= 0.97 and bool(agreement["dice_per_class"]) and min(agreement["dice_per_class"].values()) >= 0.9


def _capture_label_maps(monkeypatch) -> list[dict]:
    """Record each bench run's label maps (``{row: argmax label map}``) as it computes them."""
    import unimiss_monai.benchmarks.inference as inference

    runs, timed_rows = [], inference._timed_rows

    def spy(*args, **kwargs):
        times, labels = timed_rows(*args, **kwargs)
        runs.append(dict(labels))
        return times, labels

    monkeypatch.setattr(inference, "_timed_rows", spy)
    return runs


def test_fast_path_labels_agree_with_the_reference(tmp_path, capsys, one_thread, monkeypatch):
    """Same seeded weights on both paths, bfloat16 forced on (emulated where the CPU lacks it): the label maps of a
    20x72x72 volume agree per class; a different network (another seed) does not, so the check can fail."""
    runs = _capture_label_maps(monkeypatch)
    out = tmp_path / "bench.json"
    result = bench_infer(shape=(20, 72, 72), swinunetr=False, overrides={**SMOKE, "cpu_bfloat16": True}, out=str(out))
    text = capsys.readouterr().out
    assert "load average" in text and "torch threads" in text
    assert f"{FAST} " in text and f"vs {REFERENCE} " in text and "(medians)" in text
    saved = json.loads(out.read_text())
    assert saved["results"][FAST]["inferer"] == "MirrorTTAInferer > AutocastInferer (bfloat16) > SlidingWindowInferer"
    agreement = result["agreement_reference_vs_fast"]
    assert _agrees(agreement), agreement
    # the reported agreement is that of the label maps the two rows produced
    reference, fast = runs[0][REFERENCE], runs[0][FAST]
    assert agreement["voxels_equal"] == pytest.approx(float((reference == fast).double().mean()), abs=1e-6)

    # the fast path of another seed's network against this reference: the same check rejects it
    bench_infer(shape=(20, 72, 72), swinunetr=False, overrides={**SMOKE, "cpu_bfloat16": True}, seed=1, out=str(tmp_path / "other.json"))
    other = runs[1][FAST]
    assert other.shape == reference.shape
    different = {"voxels_equal": float((reference == other).double().mean()), "dice_per_class": dice_per_class(reference, other, _num_classes())}
    assert not _agrees(different), different


def test_agreement_check_can_fail():
    a = torch.randint(0, 4, (20, 30, 30), generator=torch.Generator().manual_seed(0))
    b = torch.randint(0, 4, (20, 30, 30), generator=torch.Generator().manual_seed(1))
    assert dice_per_class(a, a, 4) == {1: 1.0, 2: 1.0, 3: 1.0}
    assert max(dice_per_class(a, b, 4).values()) < 0.4
    assert dice_per_class(torch.zeros(3, 3), torch.zeros(3, 3), 4) == {}


@pytest.mark.parametrize("shape, roi, overlap", [
    ((133, 241, 241), (32, 128, 128), 0.5), ((133, 241, 241), (32, 128, 128), 0.25), ((241, 241, 133), 96, 0.5),
    ((20, 72, 72), (16, 64, 64), 0.25), ((10, 50, 50), (16, 64, 64), 0.5),
    ((133, 241, 241), (32, 128, 128), (0.25, 0.1, 0.1)), ((22, 240, 240), (32, 128, 128), (0.25, 0.1, 0.1)),
])
def test_window_count_matches_monai(shape, roi, overlap):
    calls = []

    def network(x):
        calls.append(x.shape[0])
        return x

    SlidingWindowInferer(roi, sw_batch_size=1, overlap=overlap)(torch.zeros(1, 1, *shape), network)
    assert count_windows(shape, roi, overlap) == len(calls)


class _Probe(torch.nn.Module):
    """A conv that records the dtype it computes in."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)
        self.seen = []

    def forward(self, x):
        y = self.conv(x)
        self.seen.append(y.dtype)
        return y


def test_autocast_inferer_blends_in_float32():
    torch.manual_seed(0)
    net, x = _Probe(), torch.rand(1, 1, 12, 40, 40)
    sw = SlidingWindowInferer((8, 32, 32), sw_batch_size=1, overlap=0.25, mode="gaussian")
    with torch.inference_mode():
        plain = sw(x, net)
        windows = len(net.seen)
        fast = AutocastInferer(sw, device_type="cpu")(x, net)
    assert set(net.seen[:windows]) == {torch.float32} and set(net.seen[windows:]) == {torch.bfloat16}
    assert fast.dtype == torch.float32 and fast.shape == plain.shape
    assert torch.allclose(fast, plain, atol=0.05) and not torch.equal(fast, plain)


@pytest.mark.parametrize("kwargs", [{"enabled": False}, {"device_type": "cuda"}])
def test_autocast_inferer_passes_through(kwargs):
    net, x = _Probe(), torch.rand(1, 1, 8, 32, 32)
    sw = SlidingWindowInferer((8, 32, 32), sw_batch_size=1)
    with torch.inference_mode():
        assert torch.equal(AutocastInferer(sw, **kwargs)(x, net), sw(x, net))
    assert set(net.seen) == {torch.float32}


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "float64"}, "dtype must be one of"), ({"device_type": "tpu"}, "device_type must be 'cpu', 'cuda' or None"),
])
def test_autocast_inferer_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutocastInferer(SlidingWindowInferer(8), **kwargs)


def test_ct_and_label_are_scored_on_the_ct_grid(tmp_path, one_thread, monkeypatch):
    """A CT through the bundle's preprocessing: both label maps go back onto the CT's grid and are scored against its
    label map (the Dice per class recomputed here from the inverted maps and the label file); a label map of another
    shape is refused in one line."""
    import nibabel as nib
    import numpy as np

    import unimiss_monai.benchmarks.inference as inference
    from unimiss_monai.data import save_nifti
    from unimiss_monai.data.sample_sets.ct_segmentation import make_organ_phantom

    inverted, invert = [], inference._invert_labels

    def spy(*args, **kwargs):
        inverted.append(invert(*args, **kwargs))
        return inverted[-1]

    monkeypatch.setattr(inference, "_invert_labels", spy)
    hu, labels, affine = make_organ_phantom()
    ct = save_nifti(hu, affine, tmp_path / "ct.nii.gz")
    label = save_nifti(labels, affine, tmp_path / "label.nii.gz")
    overrides = {**SMOKE, "pixdim": [10.0, 10.0, 10.0]}
    result = bench_infer(ct=str(ct), label=str(label), swinunetr=False, overrides=overrides, out=str(tmp_path / "b.json"))
    assert result["setup"].startswith("CT ct.nii.gz, network grid (25, 32, 29) (Z, X, Y)")
    scores = result["dice_vs_label"]
    assert set(scores) == {REFERENCE, FAST}
    # each row's label map back on the CT grid, scored independently: Dice per class present in either map
    truth = np.asarray(nib.load(label).dataobj).round().astype(np.int64)
    assert len(inverted) == 2
    for name, mapped in zip((REFERENCE, FAST), inverted):  # bench_infer inverts the rows in this order
        mapped = mapped.numpy()
        assert mapped.shape == truth.shape == hu.shape
        expected = {}
        for c in range(1, _num_classes()):
            size = int((mapped == c).sum() + (truth == c).sum())
            if size:
                expected[c] = 2.0 * int(((mapped == c) & (truth == c)).sum()) / size
        assert expected and scores[name].keys() == expected.keys(), (name, scores[name], expected)
        assert scores[name] == pytest.approx(expected, abs=1e-5), name
    wrong = save_nifti(labels[:-1], affine, tmp_path / "wrong.nii.gz")
    with pytest.raises(ValueError, match="pass the label map of this CT"):
        bench_infer(ct=str(ct), label=str(wrong), swinunetr=False, overrides=overrides, out=str(tmp_path / "c.json"))
