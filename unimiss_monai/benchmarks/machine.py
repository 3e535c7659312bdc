"""What every benchmark states beside its numbers: the machine, the load, the device it was asked for, and how one call
was measured (wall and CPU seconds, peak memory)."""

from __future__ import annotations

import os
import resource
import sys
import time
import warnings
from collections.abc import Callable

import torch

from unimiss_monai.utils.args import as_count
from unimiss_monai.utils.devices import device_problem

__all__ = ["check_device", "cpu_model", "format_load", "format_seconds", "machine_name", "measure", "resident_mib",
           "set_threads"]


def check_device(command: str, device: str) -> None:
    """Refuse, in one line naming ``command``, a device this PyTorch cannot run on (``gpu``, ``cuda`` on a CPU-only
    build, ``cuda:7`` on a machine with two GPUs), before a CT is read or a network built."""
    problem = device_problem(device, "--device", f"run {command} on")
    if problem is not None:
        raise ValueError(f"{command}: {problem}")


def set_threads(command: str, threads, numba_too: bool = False) -> None:
    """Run torch (and numba, with ``numba_too``) on ``threads`` CPU threads, checked first: ``None`` keeps the
    libraries' defaults; anything but a whole number of at least 1 is refused in one line naming ``command`` (``0``
    does not mean "all cores", and ``--threads`` without a value reaches here as ``True``)."""
    if threads is None:
        return
    n = as_count(threads, f"{command}: --threads (leave it out for the default)")
    torch.set_num_threads(n)
    if numba_too:
        import numba

        most = numba.config.NUMBA_NUM_THREADS  # numba refuses more threads than it started with
        if n > most:
            warnings.warn(f"{command}: numba runs {most} thread(s), not {n}: it starts with NUMBA_NUM_THREADS={most}; "
                          f"set NUMBA_NUM_THREADS={n} in the environment for more")
        numba.set_num_threads(min(n, most))


def resident_mib(peak: bool = False) -> float:
    """This process's resident memory in MiB: now, or its peak (since the start or since :func:`measure` last reset
    it). Without ``/proc`` (macOS) the current size reads 0, so a peak measured from it is the process's whole peak."""
    field = "VmHWM:" if peak else "VmRSS:"
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:  # no /proc (macOS): the peak is in the process's usage, the current size is not
        pass
    if not peak:
        return 0.0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB elsewhere


def measure(fn: Callable[[], torch.Tensor], device: str = "cpu") -> tuple[float, float, float, torch.Tensor]:
    """Wall seconds, process CPU seconds, peak extra MiB (resident memory; CUDA allocated memory for a CUDA
    ``device``, synchronised before and after), result."""
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device) / 2**20
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS counter
        except OSError:
            pass
        before = resident_mib()
    t, c = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = fn()
        if cuda:
            torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else resident_mib(peak=True)
    return wall, cpu, max(0.0, peak - before), out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_name(device: str) -> str:
    """``"<CPU model>, <n> CPUs"``, with ``", GPU <name>"`` for a CUDA device: the machine line of a benchmark."""
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    return f"{cpu_model()}, {os.cpu_count()} CPUs{gpu}"


def format_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in load)


def format_seconds(s: float) -> str:
    """Three decimals, or three significant digits below 10 ms (GPU renderers take about a millisecond)."""
    return f"{s:.3f}" if s >= 0.01 else f"{s:.3g}"
