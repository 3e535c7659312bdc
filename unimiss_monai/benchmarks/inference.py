"""Benchmark ``bench-infer``: whole-CT sliding-window inference, the CT segmentation bundle's network vs SwinUNETR.

Both networks segment the same volume with MONAI's ``SlidingWindowInferer`` at the same ROI, overlap, batch of
windows and Gaussian blending, in one process, alternating per repeat so that machine load hits both alike.
SwinUNETR is in its BTCV configuration (feature size 48, 14 classes); ours is ``UniMissSegmentation`` with 14
classes. Our network takes volumes slices-first (the bundle transposes RAS ``(X, Y, Z)`` to ``(Z, X, Y)``), so it
gets the same voxels in that order; the window grid is the same.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

__all__ = ["bench_infer"]


def _build(name: str, variant: str, roi: int, classes: int) -> torch.nn.Module:
    if name == "swinunetr":
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(in_channels=1, out_channels=classes, feature_size=48)
    from unimiss_monai.networks import UniMissSegmentation

    return UniMissSegmentation(3, 1, classes, variant=variant, img_size=(roi, roi, roi))


def bench_infer(
    repeats: int = 1,
    volume: tuple[int, int, int] = (192, 192, 96),
    roi: int = 96,
    overlap: float = 0.5,
    sw_batch_size: int = 4,
    variant: str = "mitplus",
    classes: int = 14,
    threads: int | None = None,
    device: str = "cpu",
    out: str = "outputs/bench_infer.json",
) -> dict:
    """Time whole-volume sliding-window inference of ours and SwinUNETR; print a table and write JSON.

    Args:
        repeats: timed runs per network (after one untimed warm-up window). Defaults to 1.
        volume: ``(X, Y, Z)`` voxels of the CT (RAS order; ours receives ``(Z, X, Y)``). Defaults to 192x192x96.
        roi: cubic ROI edge. Defaults to 96.
        overlap: window overlap. Defaults to 0.5.
        sw_batch_size: windows per forward pass. Defaults to 4.
        variant: our variant. Defaults to ``"mitplus"``.
        classes: output channels of both. Defaults to 14 (BTCV).
        threads: torch CPU threads (default: torch's own choice).
        device: ``"cpu"`` or ``"cuda"``.
        out: JSON path (written atomically).

    Returns:
        the result dict (also written to ``out``).
    """
    from monai.inferers import SlidingWindowInferer

    from unimiss_monai.data.writers import save_json

    if threads:
        torch.set_num_threads(int(threads))
    volume = tuple(int(v) for v in volume)
    inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian")
    torch.manual_seed(0)
    x_ras = torch.randn(1, 1, *volume, device=device)
    inputs = {"unimiss": x_ras.permute(0, 1, 4, 2, 3).contiguous(), "swinunetr": x_ras}
    models = {name: _build(name, variant, roi, classes).to(device).eval() for name in inputs}
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, model in models.items():  # warm-up: one window, so allocation and kernel choice are not timed
            model(torch.zeros(1, 1, roi, roi, roi, device=device))
        bar = tqdm(total=repeats * len(models), desc="bench-infer", unit="volume")
        for _ in range(repeats):
            for name, model in models.items():
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                pred = inferer(inputs[name], model)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
                assert pred.shape == (1, classes, *inputs[name].shape[2:])
                bar.update(1)
        bar.close()
    rows = {
        name: {
            "params_m": round(sum(p.numel() for p in models[name].parameters()) / 1e6, 2),
            "median_s": round(statistics.median(t), 3),
            "min_s": round(min(t), 3),
            "max_s": round(max(t), 3),
            "runs": [round(v, 3) for v in t],
        }
        for name, t in times.items()
    }
    speedup = rows["swinunetr"]["median_s"] / rows["unimiss"]["median_s"]
    result = {
        "benchmark": "whole-volume sliding-window inference",
        "volume_xyz": list(volume), "roi": roi, "overlap": overlap, "sw_batch_size": sw_batch_size, "blend": "gaussian",
        "classes": classes, "variant": variant, "device": device, "threads": torch.get_num_threads(), "repeats": repeats,
        "results": {f"unimiss_{variant}": rows["unimiss"], "swinunetr_btcv_fs48": rows["swinunetr"]},
        "speedup_vs_swinunetr": round(speedup, 2),
    }
    print(f"\nsliding-window inference, volume {volume}, ROI {roi}^3, overlap {overlap}, gaussian, {device}, {torch.get_num_threads()} threads")
    print(f"{'network':<24}{'params (M)':>12}{'median (s)':>12}{'range (s)':>18}")
    for label, row in result["results"].items():
        print(f"{label:<24}{row['params_m']:>12.2f}{row['median_s']:>12.2f}{row['min_s']:>9.2f} - {row['max_s']:<7.2f}")
    print(f"speed-up of ours over SwinUNETR: {speedup:.2f}x")
    save_json(result, Path(out))
    print(f"[bench-infer] {out}")
    return result
