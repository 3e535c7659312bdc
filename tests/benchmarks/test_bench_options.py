"""``bench-drr --device``, ``bench-backbone --amp`` and ``bench-infer --device``: accepted values run, bad ones are
refused in one line before any work, and CUDA where there is none is named as the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unimiss_monai.benchmarks import backbone
from unimiss_monai.benchmarks.backbone import bench_backbone, parse_amp
from unimiss_monai.benchmarks.drr import bench_drr, our_names
from unimiss_monai.benchmarks.inference import bench_infer
from unimiss_monai.benchmarks.machine import check_device

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("run", [
    lambda: bench_drr(device="cuda", ct="/nonexistent/ct.nii.gz"),
    lambda: bench_backbone(device="cuda"),
    lambda: bench_infer(device="cuda", ct="/nonexistent/ct.nii.gz"),
])
def test_cuda_without_cuda_is_one_line(no_cuda, run):
    # refused before the (missing) CT is read or any network is built
    no_device = r": cuda asked for, but this PyTorch sees no CUDA device; pass --device cpu$"
    with pytest.raises(ValueError, match=no_device) as err:
        run()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("device", ["gpu", "cuda0", "tpu", "cuda:x"])
def test_unknown_device_refused(device):
    with pytest.raises(ValueError, match=rf"^bench-drr: '{device}' is not a device to run bench-drr on; pass --device "
                                         r"cpu or --device cuda\[:N\]$"):
        check_device("bench-drr", device)


def test_a_gpu_this_machine_lacks_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("bench-drr", "cuda:1")
    with pytest.raises(ValueError, match=r"^bench-drr: cuda:7 asked for, but this PyTorch sees 2 CUDA device\(s\); "
                                         r"pass --device cpu or cuda:0 to cuda:1$"):
        check_device("bench-drr", "cuda:7")


def test_cli_prints_the_refusal_as_one_line():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "unimiss_monai", "bench-drr", "--device", "cuda", "--ours_only"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "codec" not in line.lower()]
    # the package's error hook: the message on one line, then its hint on how to see the traceback
    assert lines[-2].startswith("error: bench-drr: cuda asked for, but this PyTorch sees no CUDA device"), proc.stderr
    assert lines[-1].startswith("(set UNIMISS_TRACEBACK=1")


def test_gpu_rows_are_named_after_their_device():
    cpu, gpu = our_names("cpu"), our_names("cuda:1")
    assert all("(numba)" in n for n in cpu) and all("(torch, cuda:1)" in n for n in gpu) and len(set(gpu)) == 3


@pytest.mark.parametrize("value, dtype", [
    (None, None), (False, None), ("none", None), ("fp32", None), (True, "bfloat16"), ("bf16", "bfloat16"),
    ("BF16", "bfloat16"), ("fp16", "float16"), ("float16", "float16"),
])
def test_amp_values(value, dtype):
    assert parse_amp(value) == dtype


@pytest.mark.parametrize("value", ["int8", "fp8", "2"])
def test_bad_amp_refused_before_any_work(value, monkeypatch):
    monkeypatch.setattr(backbone, "_run_isolated", lambda *a: pytest.fail("ran a case despite a bad --amp"))
    with pytest.raises(ValueError, match="--amp must be one of auto, bf16, fp16 or none"):
        bench_backbone(amp=value)


def test_amp_step_runs_in_bfloat16(monkeypatch, one_thread):
    """One autocast training step of the real backbone on a small 3D input: the row says bf16, and the step ran
    with its attention products in bfloat16 (under CPU autocast the fused attention takes the explicit product)."""
    from unimiss_monai.networks.blocks.attention import SpatialReductionAttention

    monkeypatch.setitem(backbone.CASES, "3d", {"shape": (1, 16, 32, 32), "batch": 1})
    seen = []
    original = SpatialReductionAttention._weights

    def spy(self, q, k):
        seen.append(q.dtype)
        return original(self, q, k)

    monkeypatch.setattr(SpatialReductionAttention, "_weights", spy)
    (row,) = backbone._interleaved("mitplus", "3d", [(True, "bfloat16")], "cpu", 1, 0, 1)
    assert row["amp"] == "bfloat16" and row["column"] == "ours" and row["attention"] == "explicit"
    assert row["samples_per_s_median"] > 0
    assert seen and set(seen) == {torch.bfloat16}


def test_columns_are_timed_round_robin_with_the_same_weights(monkeypatch, one_thread):
    """The columns of a case alternate step by step in one process (a load change hits them alike), and every
    column starts from the same weights, so official and ours differ only in the attention."""
    from unimiss_monai.networks.blocks.attention import SpatialReductionAttention

    monkeypatch.setitem(backbone.CASES, "3d", {"shape": (1, 16, 32, 32), "batch": 1})
    order, original = [], SpatialReductionAttention.forward

    def spy(self, *args, **kwargs):
        if not order or order[-1] != self.fused:  # one entry per run of calls of one column
            order.append(self.fused)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SpatialReductionAttention, "forward", spy)
    built = []
    make = backbone._model_and_step
    monkeypatch.setattr(backbone, "_model_and_step", lambda *a: built.append(make(*a)) or built[-1])
    rows = backbone._interleaved("mitplus", "3d", [(False, None), (True, None)], "cpu", 3, 1, 1)
    # one warm-up step of each column, then three timed rounds: official, ours, official, ours, ...
    assert order == [False, True] * 4
    assert [(r["column"], r["attention"]) for r in rows] == [("official", "official"), ("ours", "sdpa")]
    assert all(r["samples_per_s_median"] > 0 and r["peak_mem_mib"] is None for r in rows)
    (official, _), (ours, _) = built
    assert all(torch.equal(a, b) for a, b in zip(official.state_dict().values(), ours.state_dict().values()))


def test_columns_default_to_official_float32_against_ours_and_a_given_amp_applies_to_both(monkeypatch):
    from unimiss_monai.inferers import autocast

    monkeypatch.setattr(autocast, "cpu_has_fast_bfloat16", lambda: True)
    assert backbone.columns("cpu") == [(False, None), (True, None), (True, "bfloat16")]
    monkeypatch.setattr(autocast, "cpu_has_fast_bfloat16", lambda: False)
    assert backbone.columns("cpu", "auto") == [(False, None), (True, None)]
    assert backbone.columns("cpu", "bf16") == [(False, "bfloat16"), (True, "bfloat16")]
    assert backbone.columns("cpu", "none") == [(False, None), (True, None)]


def test_unknown_inputs_refused():
    with pytest.raises(ValueError, match="unknown --inputs"):
        bench_backbone(inputs="4d")


@pytest.mark.parametrize("existing", ["b.json", "b.png"])
def test_existing_results_or_chart_are_refused_before_any_work(existing, tmp_path, monkeypatch):
    """bench-backbone wrote its JSON and the chart beside it over whatever was there."""
    monkeypatch.setattr(backbone, "_run_isolated", lambda *a: pytest.fail("ran a case despite an existing output"))
    (tmp_path / existing).write_text("mine")
    with pytest.raises(FileExistsError, match=f"{existing} exists and is not replaced: pass --overwrite true"):
        bench_backbone(out=str(tmp_path / "b.json"))
    assert [p.name for p in tmp_path.iterdir()] == [existing] and (tmp_path / existing).read_text() == "mine"


def test_bench_infer_refuses_an_existing_result_before_any_work(tmp_path, monkeypatch):
    import unimiss_monai.benchmarks.inference as inference

    monkeypatch.setattr(inference, "load_paths", lambda *a: pytest.fail("loaded a network despite an existing output"))
    (tmp_path / "i.json").write_text("mine")
    with pytest.raises(FileExistsError, match="bench-infer: --out .*i.json exists and is not replaced"):
        bench_infer(shape=(16, 64, 64), out=str(tmp_path / "i.json"))
    assert (tmp_path / "i.json").read_text() == "mine"


def _pretrain(**kw):
    from unimiss_monai.benchmarks.pretrain import bench_pretrain

    return bench_pretrain(tiny=True, device="cpu", **kw)


def _drr_cases(**kw):
    from unimiss_monai.benchmarks.drr_cases import bench_drr_cases

    return bench_drr_cases(ct="/nonexistent/ct.nii.gz", **kw)


@pytest.mark.parametrize(("run", "match"), [
    (lambda out: _pretrain(out_dim=0), r"^bench-pretrain: --out_dim must be a whole number of at least 1, got 0$"),
    (lambda out: _pretrain(batch_size=0), r"^bench-pretrain: --batch_size .* at least 1, got 0$"),
    (lambda out: _pretrain(out_dim="abc"), r"^bench-pretrain: --out_dim .* got 'abc'$"),
    (lambda out: _pretrain(image_size_2d=0), r"^bench-pretrain: --image_size_2d .* got 0$"),
    (lambda out: _pretrain(threads=0), r"^bench-pretrain: --threads \(leave it out for the default\) .* got 0$"),
    (lambda out: _pretrain(threads=True), r"^bench-pretrain: --threads .* got True$"),
    (lambda out: bench_backbone(variants="foo,mitplus", out=out), r"^bench-backbone: unknown --variants \['foo'\]"),
    (lambda out: bench_backbone(variants="", out=out), r"^bench-backbone: unknown --variants \[''\]"),
    (lambda out: bench_backbone(threads=0, out=out), r"^bench-backbone: --threads .* got 0$"),
    (lambda out: bench_backbone(repeats="x", out=out), r"^bench-backbone: --repeats .* got 'x'$"),
    (lambda out: bench_drr(threads=-1, out=out, ct="/nonexistent/ct.nii.gz"), r"^bench-drr: --threads .* got -1$"),
    (lambda out: bench_drr(competitor_repeats=0, out=out), r"^bench-drr: --competitor_repeats .* got 0$"),
    (lambda out: _drr_cases(copies="two", out=out), r"^bench-drr-cases: --copies .* got 'two'$"),
    (lambda out: _drr_cases(threads=0, out=out), r"^bench-drr-cases: --threads .* got 0$"),
    (lambda out: bench_infer(threads=0, out=out), r"^bench-infer: --threads .* got 0$"),
    (lambda out: bench_infer(shape="0,32,32", out=out), r"^bench-infer: each --shape size .* got '0'$"),
    (lambda out: bench_infer(shape=(32, 32), out=out), r"^bench-infer: --shape takes three sizes .* got \(32, 32\)$"),
])
def test_a_count_that_is_not_a_whole_number_of_at_least_one_is_refused_before_any_work(run, match, tmp_path,
                                                                                       monkeypatch):
    """``--out_dim 0`` ended in a reshape traceback, ``--batch_size 0`` was reported as an empty datalist, ``--threads
    0`` silently meant the default, and ``bench-backbone --variants foo`` ran, failed every case and left its JSON and
    chart behind: each is now one line naming the option, before a network is built or a file written."""
    monkeypatch.setattr(backbone, "_run_isolated", lambda *a: pytest.fail("ran a case despite a bad option"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match=match):
        run(str(tmp_path / "bench.json"))
    assert list(tmp_path.iterdir()) == [] and torch.get_num_threads() == threads
