"""Whether this PyTorch can run on a device a user named (``--device cuda:1``), said in one line before any work."""

from __future__ import annotations

from typing import Any

__all__ = ["check_device", "device_problem"]


def device_problem(device: Any, option: str = "--device", use: str = "run these bundles on") -> str | None:
    """Why this PyTorch cannot ``use`` ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``), as one line with the values of
    ``option`` that work; ``None`` when it can.

    A CUDA device this PyTorch does not see (a CPU-only build, or ``cuda:7`` on a machine with two GPUs) would fail
    only when the first tensor moves there, after the data loaded, with torch's "Torch not compiled with CUDA enabled".
    """
    import torch

    try:
        dev = torch.device(device) if isinstance(device, (str, torch.device)) else None
    except RuntimeError:  # "cuda:x", "gpu", ""
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        return f"{device!r} is not a device to {use}; pass {option} cpu or {option} cuda[:N]"
    if dev.type == "cpu":
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count and (dev.index or 0) < count:
        return None
    sees = f"{count} CUDA device(s)" if count else "no CUDA device"
    return (f"{device} asked for, but this PyTorch sees {sees}; pass {option} cpu"
            + (f" or cuda:0 to cuda:{count - 1}" if count else ""))


def check_device(device: Any, name: str = "device", use: str = "run these bundles on") -> Any:
    """``device`` when this PyTorch can ``use`` it; else ``ValueError``: ``"<name>: "`` and :func:`device_problem`'s
    line (``"device: cuda asked for, but this PyTorch sees no CUDA device; pass --device cpu"``)."""
    problem = device_problem(device, f"--{name}", use)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")
    return device
