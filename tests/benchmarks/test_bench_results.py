"""What the bench-* commands print and write, on stubbed measurements (no real benchmark runs here): the settings
asked for, every failure said and turned into a non-zero exit, ratios from unrounded medians with both sides, and
the machine, threads and load average beside the numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unimiss_monai.benchmarks import backbone


def _fake_row(variant, case, fused, amp, rate):
    row = backbone._row(variant, case, fused, "cpu", amp, [backbone.CASES[case]["batch"] / rate] * 3, None, 1.0)
    return row


@pytest.fixture
def stub_backbone(monkeypatch):
    """``_run_isolated`` answering from tables instead of training: ``timed`` per case, ``memory`` per column."""
    state = {"timed": {}, "memory": {}}

    def run_isolated(fn, args):
        if fn is backbone._interleaved:
            variant, case, cols = args[:3]
            return state["timed"].get((variant, case)) or [
                _fake_row(variant, case, fused, amp, 2.0 if fused else 1.0) for fused, amp in cols]
        variant, case, fused = args[:3]
        return state["memory"].get((variant, case, fused), 100.0 if fused else 200.0)

    monkeypatch.setattr(backbone, "_run_isolated", run_isolated)
    monkeypatch.setattr(backbone, "_plot", lambda rows, path: None)
    from unimiss_monai.inferers import autocast

    monkeypatch.setattr(autocast, "cpu_has_fast_bfloat16", lambda: True)
    return state


def test_backbone_json_records_the_amp_setting_asked_for(stub_backbone, tmp_path, capsys):
    out = tmp_path / "b.json"
    backbone.bench_backbone(variants="mitplus", inputs="3d", out=str(out), amp="auto")
    payload = json.loads(out.read_text())
    # three columns (official fp32, ours fp32, ours bf16): the setting is still the one given, not the last column's
    assert [r["amp"] for r in payload["results"]] == ["float32", "float32", "bfloat16"]
    assert payload["amp"] == "auto"
    text = capsys.readouterr().out
    assert "threads" in text and "load average" in text and payload["machine"] in text


def test_backbone_failed_case_is_a_non_zero_exit_after_writing(stub_backbone, tmp_path):
    stub_backbone["timed"][("mitplus", "3d")] = {"error": "RuntimeError: out of memory", "args": []}
    out = tmp_path / "b.json"
    with pytest.raises(RuntimeError, match="out of memory"):
        backbone.bench_backbone(variants="mitplus,mit_small", inputs="3d", out=str(out))
    rows = json.loads(out.read_text())["results"]  # the other variant's numbers are kept
    assert any(r.get("variant") == "mit_small" and r["samples_per_s_median"] > 0 for r in rows)
    assert any("out of memory" in r.get("error", "") for r in rows)


def test_backbone_failed_memory_is_said_not_nan(stub_backbone, tmp_path, capsys):
    stub_backbone["memory"][("mitplus", "3d", True)] = {"error": "MemoryError: ", "args": []}
    out = tmp_path / "b.json"
    with pytest.raises(RuntimeError, match="peak memory"):
        backbone.bench_backbone(variants="mitplus", inputs="3d", out=str(out), amp="none")
    text = capsys.readouterr().out
    assert "nan" not in text.lower().replace("nanodrr", "")
    assert "failed: MemoryError" in text
    ours = next(r for r in json.loads(out.read_text())["results"] if r["column"] == "ours")
    assert ours["peak_mem_mib"] is None and ours["peak_mem_error"].startswith("MemoryError")


def _fake_measure(walls, devices, peaks=None):
    """``measure`` that runs the call (its output is used) and reports the next of ``walls`` seconds and of ``peaks``
    MiB (1.0 without them)."""
    def measure(fn, device="cpu"):
        devices.append(device)
        return walls.pop(0), 0.001, peaks.pop(0) if peaks else 1.0, fn()
    return measure


def test_infer_ratios_of_millisecond_rows_use_unrounded_medians_and_show_both(monkeypatch, tmp_path, capsys,
                                                                              one_thread):
    """On a GPU a whole CT can take milliseconds: the ratio is of the medians as measured, not of values rounded to
    0.01 s (which made 4 ms a division by zero), and both sides are printed with their digits. Each row's peak
    memory is the one measured for it."""
    from unimiss_monai.benchmarks import inference

    monkeypatch.setattr(inference, "measure", _fake_measure([0.0123, 0.0041], [], [300.4, 120.6]))
    result = inference.bench_infer(shape=(16, 64, 64), swinunetr=False, repeats=1, out=str(tmp_path / "i.json"),
                                   overrides={"network_def#preset": "smoke", "roi_size": [16, 64, 64]})
    (line,) = result["ratios"]
    assert line == f"{inference.FAST} 0.0041 s vs {inference.REFERENCE} 0.012 s (medians): 3.00x"
    assert line in capsys.readouterr().out
    assert result["results"][inference.FAST]["median_s"] == pytest.approx(0.0041)
    rows = json.loads((tmp_path / "i.json").read_text())["results"]
    assert {name: rows[name]["peak_extra_mib"] for name in (inference.REFERENCE, inference.FAST)} == {
        inference.REFERENCE: 300, inference.FAST: 121}


def test_infer_timing_on_a_gpu_measures_the_gpu_memory(monkeypatch):
    """On a CUDA device every run is measured there (its allocated memory, not the host's): each row keeps the peaks
    measured for its own runs (round-robin: a, b, a, b) and the label map of its output."""
    import torch

    from unimiss_monai.benchmarks import inference

    devices = []
    monkeypatch.setattr(inference, "measure", _fake_measure([0.5, 0.6, 0.7, 0.8], devices, [11.0, 22.0, 33.0, 44.0]))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    outputs = {name: torch.zeros(1, 3, 2, 2, 2) for name in ("a", "b")}
    outputs["b"][:, 2] = 1.0  # b's label map is class 2 everywhere, a's class 0
    runners = {name: (lambda n=name: outputs[n]) for name in ("a", "b")}
    times, labels = inference._timed_rows(runners, 2, "cuda:0")
    assert devices == ["cuda:0"] * 4
    assert times["a"]["mem"] == [11.0, 33.0] and times["b"]["mem"] == [22.0, 44.0]
    assert times["a"]["wall"] == [0.5, 0.7] and times["b"]["wall"] == [0.6, 0.8]
    assert set(labels) == {"a", "b"} and torch.equal(labels["a"], torch.zeros(2, 2, 2, dtype=torch.uint8))
    assert torch.equal(labels["b"], torch.full((2, 2, 2), 2, dtype=torch.uint8))


def test_pretrain_prints_the_machine_threads_and_load_average(monkeypatch, capsys, one_thread):
    """The result of bench-pretrain says where it was measured; the training step itself is stubbed here."""
    from ignite.engine import Engine

    from unimiss_monai.benchmarks import machine
    from unimiss_monai.benchmarks.pretrain import bench_pretrain
    from unimiss_monai.engines import pretraining

    class QuickTrainer(Engine):
        def __init__(self, **kwargs):
            super().__init__(lambda engine, batch: None)

        def run(self):
            return super().run([0, 1, 2], max_epochs=1)

    monkeypatch.setattr(pretraining, "PretrainingTrainer", QuickTrainer)
    monkeypatch.setattr(machine, "cpu_model", lambda: "Test CPU 9000")
    result = bench_pretrain(tiny=True, out_dim=8, ct_roi=(16, 64, 64), image_size_2d=64, steps=2, warmup=1,
                            batch_size=1, device="cpu", threads=1)
    assert result["steps_timed"] == 2
    assert "Test CPU 9000" in result["machine"] and result["threads"] == 1
    assert len(result["load_average"]["start"]) == 3 and len(result["load_average"]["end"]) == 3
    text = capsys.readouterr().out
    assert "Test CPU 9000" in text and "1 threads" in text and "load average" in text


def test_drr_times_the_preparation_as_often_as_the_renderers(tmp_path, capsys, one_thread):
    """bench-drr on a small phantom: the preparation row is a median over ``repeats`` calls with its first call beside
    it, and agrees with the JSON."""
    from unimiss_monai.benchmarks.drr import bench_drr
    from unimiss_monai.data.writers import save_nifti

    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (24, 20, 16)), indexing="ij")
    hu = np.where(x**2 + y**2 < 0.7, 40.0, -1000.0).astype(np.float32)
    ct = save_nifti(hu, np.diag([4.0, 4.0, 5.0, 1.0]), tmp_path / "phantom.nii.gz")
    out = tmp_path / "bench_drr.json"
    bench_drr(sizes=16, repeats=3, ct=str(ct), out=str(out), ours_only=True, threads=1)
    prep = json.loads(out.read_text())["preparation"]
    assert prep["repeats"] == 3 and prep["min_s"] <= prep["median_s"] <= prep["max_s"]
    assert prep["min_s"] <= prep["first_s"] <= prep["max_s"]
    assert f"{prep['median_s']:.3f} s median" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at least 1"):
        bench_drr(sizes=16, repeats=0, ct=str(ct), ours_only=True)


@pytest.mark.parametrize(("ct_roi", "match"), [((16, 96), "takes three sizes"), ("16,96,96,1", "takes three sizes"),
                                               (16, "takes three sizes"), ((16, 0, 96), "at least 1, got 0"),
                                               ((16, "x", 96), "at least 1, got 'x'")])
def test_pretrain_refuses_a_crop_that_is_not_three_sizes_before_building_anything(ct_roi, match):
    from unimiss_monai.benchmarks.pretrain import bench_pretrain

    with pytest.raises(ValueError, match=rf"^bench-pretrain: .*--ct_roi .*{match}"):
        bench_pretrain(tiny=True, out_dim=8, ct_roi=ct_roi, device="cpu")
