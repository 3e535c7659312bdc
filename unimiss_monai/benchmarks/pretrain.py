"""``python -m unimiss_monai bench-pretrain``: speed and peak memory of one UniMiSS+ pretraining step.

One step = teacher on two CT global crops, student on the CT crops, two DRR views and every second axial slice
(one 2D pass), :class:`~unimiss_monai.losses.UniMissPlusLoss`, backward, AdamW step and teacher EMA, i.e. what
:class:`~unimiss_monai.engines.PretrainingTrainer` does per CT iteration. MiT+ at the paper's sizes by default
(CT 16x96x96, 2D 96x96, 3-channel 2D input, 65536 prototypes).
"""

from __future__ import annotations

import json
import resource
import time

import torch

__all__ = ["bench_pretrain"]


def _peak_cpu_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    """Time ``steps`` UniMiSS+ training steps after ``warmup`` untimed ones; print and return a JSON summary.

    Args:
        batch_size: CT slabs per step (each gives 2 CT crops, 2 DRR views, 2 x D/2 slices).
        steps / warmup: timed / untimed steps.
        variant: backbone variant; ``tiny`` shrinks it (``networks.tiny_overrides``) for a quick check.
        out_dim: DINO prototypes. ct_roi / image_size_2d: crop sizes.
        device: default CUDA when available, else CPU. amp: bf16 autocast.
        threads: CPU threads for torch (default: torch's).
    """
    from unimiss_monai.engines import StudentTeacher
    from unimiss_monai.losses import UniMissPlusLoss
    from unimiss_monai.networks import DINOHead, build_backbone, param_groups_lrd, tiny_overrides
    from unimiss_monai.utils import update_momentum

    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    overrides = tiny_overrides(variant) if tiny else {}
    backbone = build_backbone(variant, in_channels={2: 3, 3: 1}, img_size={2: (image_size_2d,) * 2, 3: tuple(ct_roi)}, drop_path_rate=0.1, **overrides)
    net = StudentTeacher(backbone, DINOHead(backbone.embed_dim, out_dim)).to(dev)
    opt = torch.optim.AdamW(param_groups_lrd(net.student, 5e-4 * batch_size / 256, 0.04))
    loss_fn = UniMissPlusLoss(out_dim=out_dim).to(dev)
    g = torch.Generator().manual_seed(0)
    ct = [torch.rand(batch_size, 1, *ct_roi, generator=g).to(dev) for _ in range(2)]
    drr = [torch.rand(batch_size, 3, image_size_2d, image_size_2d, generator=g).to(dev) for _ in range(2)]
    slices = [c[:, :, ::2].transpose(1, 2).reshape(-1, 1, *ct_roi[1:]).expand(-1, 3, -1, -1) for c in ct]
    n_slices = slices[0].shape[0] // batch_size

    def step() -> float:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            with torch.no_grad():
                teacher = net.teacher(ct).logits.float()
            s3 = net.student(ct)
            s2 = net.student(drr + slices)
            n = 2 * batch_size
            terms = loss_fn({
                "student": s3.logits.float(), "teacher": teacher,
                "reconstruction": torch.cat(s3.reconstructions).float(), "image": torch.cat(ct),
                "student_drr": s2.logits[:n].float(),
                "reconstruction_drr": torch.cat(s2.reconstructions[:2]).float(), "image_drr": torch.cat(drr),
                "student_slices": s2.logits[n:].float().view(n, n_slices, -1),
            }, 0.04)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(net.student.parameters(), 3.0)
        opt.step()
        update_momentum(net.student, net.teacher, 0.996)
        return float(terms["total"])

    net.train()
    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "variant": variant + (" (tiny)" if tiny else ""),
        "params_student_M": round(sum(p.numel() for p in net.student.parameters()) / 1e6, 2),
        "batch_size": batch_size, "ct_roi": list(ct_roi), "image_size_2d": image_size_2d, "out_dim": out_dim,
        "amp_bf16": amp, "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "seconds_per_step": round(elapsed / steps, 3),
        "slabs_per_s": round(batch_size * steps / elapsed, 3),
        "peak_memory_MiB": round(torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else _peak_cpu_mib(), 1),
        "peak_memory_kind": "CUDA allocated" if dev.type == "cuda" else "process max RSS",
    }
    print(json.dumps(result, indent=2))
    return result
