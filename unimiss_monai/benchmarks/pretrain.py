"""``python -m unimiss_monai bench-pretrain``: speed and peak memory of the UniMiSS+ pretraining step.

The step timed is the real one: a :class:`~unimiss_monai.engines.pretraining.PretrainingTrainer` is built from the
package (student/teacher, :class:`~unimiss_monai.losses.UniMissPlusLoss`, AdamW over ``param_groups_lrd``, teacher
EMA) and run over an in-memory CT phase of random views, and each iteration is timed from ignite's
``ITERATION_STARTED`` to ``ITERATION_COMPLETED`` (the batch is already loaded; moving it to the device is included).
One iteration = teacher on two CT global crops, student on the CT crops, two DRR views and every second axial slice,
the loss, backward, gradient clipping, the AdamW step and the EMA. MiT+ at the paper's sizes by default (CT
16x96x96, 2D 96x96, 3-channel 2D input, 65536 prototypes).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time

import torch

from unimiss_monai.benchmarks.machine import check_device, format_load, machine_name, resident_mib, set_threads

__all__ = ["bench_pretrain"]


def _random_views(n: int, ct_roi: tuple[int, ...], image_size_2d: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` items holding what the CT view pipelines produce: two CT crops ``(1, *ct_roi)`` and two DRR views
    ``(3, S, S)``."""
    g = torch.Generator().manual_seed(seed)
    size_2d = (3, image_size_2d, image_size_2d)
    return [
        {"image_view0": torch.rand(1, *ct_roi, generator=g), "image_view1": torch.rand(1, *ct_roi, generator=g),
         "drr_view0": torch.rand(*size_2d, generator=g), "drr_view1": torch.rand(*size_2d, generator=g)}
        for _ in range(n)
    ]


def _fit(size, valid: dict) -> list[int]:
    """The smallest sizes from ``size`` up that ``valid`` (of ``valid_input_sizes``) allows, with more than one patch
    at the last stage (its instance norm needs two)."""
    steps, lows = valid["multiple_of"], valid["min_size"]
    good = [max(low, -(-int(s) // m) * m) for s, m, low in zip(size, steps, lows)]
    if math.prod(g // m for g, m in zip(good, steps)) < 2:
        good[-1] += steps[-1]
    return good


def _check_sizes(variant: str, tiny: bool, ct_roi: tuple[int, ...], image_size_2d: int) -> None:
    """Refuse crop sizes the backbone cannot take in the options' terms, with a valid value: the network's own line
    advises padding in Python, which a command-line user cannot do. The CT crop's axial slices (height, width) go
    through the 2D network too, so they must be a valid 2D size as well."""
    from unimiss_monai.networks.variants import check_input_size, valid_input_sizes

    preset = "smoke" if tiny else None
    v2, v3 = (valid_input_sizes(variant, d, preset=preset) for d in (2, 3))
    name, ct_roi = f"{variant}{' (tiny)' if tiny else ''}", tuple(ct_roi)

    def text(sizes) -> str:
        return ",".join(map(str, sizes))

    try:
        check_input_size(variant, 2, (image_size_2d,) * 2, preset=preset)
    except ValueError:
        # one side for both axes of a square view; the smallest valid side is fitted from 1
        side, least = (max(_fit((s, s), v2)) for s in (image_size_2d, 1))
        raise ValueError(f"bench-pretrain: --image_size_2d {image_size_2d} is not a size the {name} backbone takes (a "
                         f"multiple of {max(v2['multiple_of'])}, at least {least}); pass e.g. --image_size_2d {side}"
                         ) from None
    try:
        check_input_size(variant, 3, ct_roi, preset=preset)
        check_input_size(variant, 2, ct_roi[1:], preset=preset)
    except ValueError:
        good = list(ct_roi)
        for _ in range(4):  # alternate: a size fitted to one network can leave the other's multiples
            good = _fit(good, v3)
            good[1:] = _fit(good[1:], v2)
        raise ValueError(f"bench-pretrain: --ct_roi {text(ct_roi)} is not a size the {name} backbone takes (each a "
                         f"multiple of {text(v3['multiple_of'])}, at least {text(v3['min_size'])}; height,width also "
                         f"a 2D size: multiples of {text(v2['multiple_of'])}, more than one patch); pass e.g. "
                         f"--ct_roi {text(good)}") from None


def bench_pretrain(
    batch_size: int = 2,
    steps: int = 3,
    warmup: int = 1,
    variant: str = "mitplus",
    tiny: bool = False,
    out_dim: int = 65536,
    ct_roi: tuple[int, int, int] = (16, 96, 96),
    image_size_2d: int = 96,
    device: str | None = None,
    amp: bool = False,
    threads: int | None = None,
) -> dict:
    """Time ``steps`` pretraining iterations after ``warmup`` untimed ones; print and return a JSON summary.

    Args:
        batch_size: CT slabs per step (each gives 2 CT crops, 2 DRR views, 2 x D/2 slices).
        steps: timed steps.
        warmup: untimed steps before them (0 or more).
        variant: backbone variant: ``mitplus``, ``mit_small`` or ``mit_tiny``.
        tiny: use the variant's ``"smoke"`` preset (``networks.tiny_overrides``) for a quick check.
        out_dim: DINO prototypes.
        ct_roi: CT crop size, depth,height,width (e.g. 16,96,96; the backbone needs multiples of its stride).
        image_size_2d: side of the square DRR views (e.g. 96; a multiple of the backbone's stride).
        device: default CUDA when available, else CPU.
        amp: bf16 autocast.
        threads: CPU threads for torch (default: torch's).
    """
    from ignite.engine import Events

    from unimiss_monai.data.loaders import PhaseLoader, SeededDataset, make_loader
    from unimiss_monai.engines.pretraining import PretrainingTrainer
    from unimiss_monai.losses import UniMissPlusLoss
    from unimiss_monai.networks import DINOHead, StudentTeacher, build_backbone, param_groups_lrd
    from unimiss_monai.utils.args import as_count, as_sizes

    steps, warmup = as_count(steps, "bench-pretrain: --steps"), as_count(warmup, "bench-pretrain: --warmup", minimum=0)
    batch_size = as_count(batch_size, "bench-pretrain: --batch_size")
    out_dim = as_count(out_dim, "bench-pretrain: --out_dim")
    image_size_2d = as_count(image_size_2d, "bench-pretrain: --image_size_2d")
    set_threads("bench-pretrain", threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    check_device("bench-pretrain", str(dev))
    ct_roi = as_sizes(ct_roi, 3, "bench-pretrain: --ct_roi", "depth, height, width; e.g. 16,96,96")
    _check_sizes(variant, tiny, ct_roi, image_size_2d)
    backbone = build_backbone(variant, in_channels={2: 3, 3: 1}, img_size={2: (image_size_2d,) * 2, 3: ct_roi},
                              drop_path_rate=0.1, preset="smoke" if tiny else None)
    net = StudentTeacher(backbone, DINOHead(backbone.embed_dim, out_dim)).to(dev)
    iterations = warmup + steps
    views = SeededDataset(_random_views(batch_size, ct_roi, image_size_2d), transform=[], name="ct")
    loader = PhaseLoader(ct_loader=make_loader(views, batch_size, iterations * batch_size), epoch_length=iterations)
    trainer = PretrainingTrainer(
        device=dev, max_epochs=1, train_data_loader=loader, network=net,
        optimizer=torch.optim.AdamW(param_groups_lrd(net.student, 5e-4 * batch_size / 256, 0.04)),
        loss_function=UniMissPlusLoss(out_dim=out_dim).to(dev), ct_keys=("image_view0", "image_view1"),
        slice_stride=2, slice_channels=3, momentum_schedule=lambda step: 0.996, amp=amp,
    )
    times: list[float] = []

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def started(engine) -> None:
        sync()
        if engine.state.iteration == warmup + 1 and dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        engine.state.step_start = time.perf_counter()

    def completed(engine) -> None:
        sync()
        if engine.state.iteration > warmup:
            times.append(time.perf_counter() - engine.state.step_start)

    trainer.add_event_handler(Events.ITERATION_STARTED, started)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, completed)
    load_start = os.getloadavg()
    trainer.run()
    load_end = os.getloadavg()
    result = {
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "machine": machine_name(str(dev)),
        # the host's threads run the data handling and the Python side of every step on a GPU too
        "threads": torch.get_num_threads(),
        "load_average": {"start": list(load_start), "end": list(load_end)},
        "variant": variant + (" (tiny)" if tiny else ""),
        "params_student_M": round(sum(p.numel() for p in net.student.parameters()) / 1e6, 2),
        "batch_size": batch_size, "ct_roi": list(ct_roi), "image_size_2d": image_size_2d, "out_dim": out_dim,
        "amp_bf16": amp,
        "steps_timed": len(times),
        "seconds_per_step": round(statistics.median(times), 3),
        "seconds_per_step_range": [round(min(times), 3), round(max(times), 3)],
        "slabs_per_s": round(batch_size * len(times) / sum(times), 3),
        "peak_memory_MiB": round(
            torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else resident_mib(peak=True), 1),
        "peak_memory_kind": "CUDA allocated" if dev.type == "cuda" else "process max RSS",
    }
    print(f"bench-pretrain on {result['machine']}, device {dev}, {result['threads']} threads, load average (1/5/15 min) "
          f"{format_load(load_start)} at the start, {format_load(load_end)} at the end")
    print(json.dumps(result, indent=2))
    return result
