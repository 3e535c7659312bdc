"""Benchmark: training throughput and peak memory of the UniMiSS backbones against the official formulation.

The "official" column runs the same network with every attention switched to the explicit
``softmax(q k^T * scale) v`` formulation of the official code (``SpatialReductionAttention.fused = False``) and its
convolution weights in PyTorch's default channels-first layout, as the official code keeps them (ours are stored
channels-last, :mod:`unimiss_monai.networks.blocks.memory_format`), in float32: the official training code autocasts
on CUDA only (``torch.cuda.amp``), so on a CPU it trains in float32.
The "ours" columns run the network as this package trains it: fused attention, in float32 and, where the device
computes bfloat16 natively (a CPU with AVX512-BF16 / AMX, or CUDA), under bfloat16 autocast, the pretraining
bundle's ``amp: true``. With ``--amp bf16|fp16|none`` every column runs under that one setting instead, a
like-for-like comparison of the attention kernels. The columns of one case are built in one process (a fresh one on a
CPU) with the same weights and timed round-robin, one step each in turn, so that a change of load on a shared machine
hits every column alike. Peak memory is each column's own: on CUDA the allocator's peak growth over each step; on a
CPU the peak RSS growth of one more step of that column alone in a fresh process (RSS cannot be split between models
in one process). Autocast covers forward and loss, with no loss scaling: the throughput of a step, not a training
recipe.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import statistics
import time

import torch
from tqdm import tqdm

from unimiss_monai.benchmarks.machine import check_device, format_load, machine_name, resident_mib
from unimiss_monai.data.writers import atomic_path, check_output_file, save_json
from unimiss_monai.networks.variants import VARIANTS
from unimiss_monai.utils.args import as_count

__all__ = ["bench_backbone", "columns", "parse_amp"]

AMP_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}
_NO_AMP = {"", "none", "off", "false", "no", "0", "fp32", "float32"}


def parse_amp(amp: str | bool | None) -> str | None:
    """``amp`` as a torch dtype name (``"bfloat16"``/``"float16"``) or ``None`` for float32; ``True`` is bfloat16.

    Raises:
        ValueError: any other value, in one line listing the accepted ones.
    """
    if amp is None or amp is False:
        return None
    if amp is True:
        return "bfloat16"
    key = str(amp).strip().lower()
    if key in _NO_AMP:
        return None
    if key not in AMP_DTYPES:
        raise ValueError(f"bench-backbone: --amp must be one of auto, bf16, fp16 or none, got {amp!r}")
    return AMP_DTYPES[key]

CASES = {
    "2d": {"shape": (3, 224, 224), "batch": 4},
    "3d": {"shape": (1, 16, 96, 96), "batch": 2},
}


def columns(device: str, amp: str | bool | None = "auto") -> list[tuple[bool, str | None]]:
    """The ``(fused, autocast dtype)`` columns of a run: ``amp`` ``auto`` gives the official formulation in float32,
    ours in float32 and ours under bfloat16 autocast where ``device`` computes bfloat16 natively; any other ``amp``
    (:func:`parse_amp`) gives both formulations under that one setting."""
    if str(amp).strip().lower() != "auto":
        dtype = parse_amp(amp)
        return [(False, dtype), (True, dtype)]
    if torch.device(device).type == "cuda":
        fast_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        from unimiss_monai.inferers.autocast import cpu_has_fast_bfloat16

        fast_bf16 = cpu_has_fast_bfloat16()
    return [(False, None), (True, None)] + ([(True, "bfloat16")] if fast_bf16 else [])


def _model_and_step(variant: str, case: str, fused: bool, device: str, amp: str | None):
    """The backbone (seed 0, so every column has the same weights) with its attention switched to the fused or the
    official formulation, and one forward + backward step on a fixed random batch of ``case``."""
    from unimiss_monai.networks import build_backbone
    from unimiss_monai.networks.blocks.attention import SpatialReductionAttention

    torch.manual_seed(0)
    model = build_backbone(variant, (2, 3)).to(device).train()
    for m in model.modules():
        if isinstance(m, SpatialReductionAttention):
            m.fused = fused
    if not fused:
        model.to(memory_format=torch.contiguous_format)  # the official code's conv weights: PyTorch's default layout
    spec = CASES[case]
    x = torch.randn(spec["batch"], *spec["shape"], device=device)
    device_type = torch.device(device).type

    def step():
        autocast = torch.autocast(device_type, dtype=getattr(torch, amp)) if amp else contextlib.nullcontext()
        with autocast:
            out = model(x)
            loss = sum(o.float().mean() for o in out) if isinstance(out, tuple) else out.float().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device_type == "cuda":
            torch.cuda.synchronize()

    return model, step


def _row(variant: str, case: str, fused: bool, device: str, amp: str | None, times: list[float], peak: float | None,
         params_m: float) -> dict:
    spec = CASES[case]
    rates = [spec["batch"] / t for t in times]
    return {
        "variant": variant, "input": case, "batch": spec["batch"], "shape": list(spec["shape"]),
        # what the fused attention runs: SDPA, or the explicit product it takes under CPU autocast (attention.py)
        "attention": "official" if not fused else ("explicit" if amp and torch.device(device).type == "cpu" else "sdpa"),
        "column": "ours" if fused else "official",
        "amp": amp or "float32",
        "samples_per_s_median": statistics.median(rates),
        "samples_per_s_min": min(rates), "samples_per_s_max": max(rates), "peak_mem_mib": peak,
        "params_m": params_m,
    }


def _peak_cpu_mib(variant: str, case: str, fused: bool, device: str, warmup: int, threads: int,
                  amp: str | None = None) -> float:
    """Peak memory of one column alone on a CPU: growth of this process's peak RSS over ``warmup`` steps and one more,
    so run it in a fresh process."""
    torch.set_num_threads(threads)
    _, step = _model_and_step(variant, case, fused, device, amp)
    base = resident_mib()
    for _ in range(warmup + 1):
        step()
    return resident_mib(peak=True) - base


def _interleaved(variant: str, case: str, cols: list, device: str, repeats: int, warmup: int, threads: int) -> list[dict]:
    """Every column of one case in one process, timed round-robin (official, ours, ours bf16, official, ...), so a
    change of load on a shared machine hits them alike. On CUDA each step's peak memory is read as well (the
    allocator's peak is reset per step); a CPU's peak RSS cannot be split between models, so it is left ``None``."""
    torch.set_num_threads(threads)
    built = [_model_and_step(variant, case, fused, device, amp) for fused, amp in cols]
    cuda = torch.device(device).type == "cuda"
    for _, step in built:
        for _ in range(warmup):
            step()
    times = [[] for _ in cols]
    peaks = [0.0 if cuda else None for _ in cols]
    for _ in range(repeats):
        for i, (_, step) in enumerate(built):
            if cuda:
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - t0)
            if cuda:
                peaks[i] = max(peaks[i], (torch.cuda.max_memory_allocated() - base) / 2**20)
    return [_row(variant, case, fused, device, amp, t, peak, sum(p.numel() for p in model.parameters()) / 1e6)
            for (fused, amp), (model, _), t, peak in zip(cols, built, times, peaks)]


def _call(fn, args):
    """``fn(*args)``, or an error row when it raises, so the other cases still run."""
    try:
        return fn(*args)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}", "args": [str(a) for a in args]}


def _worker(fn, args, queue):
    queue.put(_call(fn, args))


def _run_isolated(fn, args):
    """``fn(*args)`` in a fresh process on a CPU (the process's peak RSS is then its own); in this process on a GPU,
    whose allocator's peak is reset per measurement, so CUDA starts once rather than once per case (about 15 s each).
    An exception comes back as an error row."""
    if str(args[3]).startswith("cuda"):  # args[3]: the device, for both measurements
        torch.cuda.empty_cache()
        return _call(fn, args)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(fn, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _label(row: dict) -> str:
    return f"{row['column']} ({row['attention']}, {row['amp']})"


def _table(rows: list[dict]) -> str:
    lines = [
        "| model | input | batch | column (attention, precision) | samples/s median (range) | peak mem MiB | speed vs official | mem vs official |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ref = {(r["variant"], r["input"]): r for r in rows if r.get("column") == "official"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {' '.join(r['args'][:3])} | error: {r['error']} |||||||")
            continue
        o = ref.get((r["variant"], r["input"]))
        speed = f"{r['samples_per_s_median'] / o['samples_per_s_median']:.2f}x" if o else "-"
        known = r["peak_mem_mib"] is not None and o is not None and o["peak_mem_mib"] is not None
        mem = f"{r['peak_mem_mib'] / o['peak_mem_mib']:.2f}x" if known and o["peak_mem_mib"] > 0 else "-"
        peak = f"{r['peak_mem_mib']:.0f}" if r["peak_mem_mib"] is not None else f"failed: {r.get('peak_mem_error', '-')}"
        shape = "x".join(str(s) for s in r["shape"][1:])
        lines.append(
            f"| {r['variant']} | {r['input']} {shape} | {r['batch']} | {_label(r)} | "
            f"{r['samples_per_s_median']:.2f} ({r['samples_per_s_min']:.2f}-{r['samples_per_s_max']:.2f}) | "
            f"{peak} | {speed} | {mem} |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    labels = sorted({f"{r['variant']}\n{r['input']}" for r in ok})
    kinds = list(dict.fromkeys(_label(r) for r in ok))
    width = 0.8 / max(len(kinds), 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "samples_per_s_median", "throughput (samples/s)"),
                           (axes[1], "peak_mem_mib", "peak memory (MiB)")):
        for j, kind in enumerate(kinds):
            vals = [next((r[key] for r in ok if f"{r['variant']}\n{r['input']}" == lab and _label(r) == kind), 0)
                    for lab in labels]
            vals = [float("nan") if v is None else v for v in vals]  # a memory that failed: no bar
            ax.bar([i + width * j for i in range(len(labels))], vals, width=width, label=kind)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def bench_backbone(
    device: str = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    variants: str | tuple = "mit_small,mitplus",
    inputs: str | tuple = "2d,3d",
    threads: int = 2,
    out: str = "outputs/bench_backbone.json",
    amp: str | bool | None = "auto",
    overwrite: bool = False,
) -> None:
    """Forward+backward throughput and peak memory of our training step and the official formulation's, side by side.

    Args:
        device: ``cpu`` or ``cuda``.
        repeats: timed iterations per case (median and range are reported).
        warmup: untimed iterations first.
        variants: comma-separated variants.
        inputs: ``2d`` (224x224, batch 4) and/or ``3d`` (16x96x96, batch 2).
        threads: torch CPU threads.
        out: JSON output (a PNG chart of the same name is written next to it); both written atomically.
        amp: ``auto`` (default): the official formulation in float32 (as the official code trains on a CPU), ours in
            float32 and, where ``device`` computes bfloat16 natively, ours under bfloat16 autocast; ``bf16``,
            ``fp16`` or ``none``: both formulations under that one setting (a like-for-like kernel comparison).
        overwrite: replace an existing ``out`` and its chart (else they are refused before any work).
    """
    check_device("bench-backbone", device)
    repeats, threads = as_count(repeats, "bench-backbone: --repeats"), as_count(threads, "bench-backbone: --threads")
    warmup = as_count(warmup, "bench-backbone: --warmup", minimum=0)
    variants = variants.split(",") if isinstance(variants, str) else list(variants)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        raise ValueError(f"bench-backbone: unknown --variants {unknown or variants}; choose from {', '.join(VARIANTS)}")
    inputs = inputs.split(",") if isinstance(inputs, str) else list(inputs)
    unknown = sorted(set(inputs) - set(CASES))
    if unknown or not inputs:
        raise ValueError(f"bench-backbone: unknown --inputs {unknown or inputs}; choose from {', '.join(CASES)}")
    png = os.path.splitext(out)[0] + ".png"
    if os.path.abspath(png) == os.path.abspath(out):
        raise ValueError(f"bench-backbone: --out {out} would be replaced by its own chart; give a .json file")
    check_output_file(out, overwrite, "bench-backbone: --out")
    check_output_file(png, overwrite, "bench-backbone: the chart")
    cols = columns(device, amp)
    cuda = torch.device(device).type == "cuda"
    load_start = os.getloadavg()
    rows = []
    for v, c in tqdm([(v, c) for v in variants for c in inputs], desc="bench-backbone"):
        timed = _run_isolated(_interleaved, (v, c, cols, device, repeats, warmup, threads))
        if isinstance(timed, dict):  # the case failed: one error row per column
            rows += [dict(timed, args=[v, c, "ours" if fused else "official", str(dtype or "float32")])
                     for fused, dtype in cols]
            continue
        if not cuda:  # a CPU's peak memory per column: one more warm-up and one step, each in a fresh process
            for row, (fused, dtype) in zip(timed, cols):
                alone = _run_isolated(_peak_cpu_mib, (v, c, fused, device, min(warmup, 1), threads, dtype))
                if isinstance(alone, dict):  # the throughput stands; the memory is unknown, and says why
                    row["peak_mem_mib"], row["peak_mem_error"] = None, alone["error"]
                else:
                    row["peak_mem_mib"] = alone
        rows += timed
    load_end = os.getloadavg()
    machine = machine_name(device)
    table = _table(rows)
    precisions = ", ".join(dict.fromkeys(f"{'ours' if f else 'official'} {d or 'float32'}" for f, d in cols))
    memory = "each column alone in a fresh process" if not cuda else "per step, in the same process"
    print(f"\nbackbone forward+backward on {machine}, device {device}, columns: {precisions}, {threads} threads, "
          f"{repeats} repeats timed round-robin in one process per case, peak memory {memory}, load average "
          f"{format_load(load_start)} -> {format_load(load_end)}\n")
    print(table)
    payload = {"device": device, "machine": machine, "amp": str(amp), "threads": threads, "repeats": repeats,
               "timing": "round-robin over the columns, one process per case", "memory": memory,
               "torch": torch.__version__, "load_average": {"start": list(load_start), "end": list(load_end)},
               "results": rows}
    save_json(payload, out)
    _plot(rows, png)
    print(f"\nwrote {out} and {png}")
    failed = [r for r in rows if "error" in r or "peak_mem_error" in r]
    if failed:  # written above with the rest; a scripted run must not read the missing numbers as measured
        first = failed[0]
        raise RuntimeError(f"bench-backbone: {len(failed)} of {len(rows)} column(s) failed, listed in {out}; first: "
                           f"{' '.join(first.get('args', [first.get('variant', '?'), first.get('input', '?')])[:3])}: "
                           f"{first.get('error') or 'peak memory: ' + first['peak_mem_error']}")
