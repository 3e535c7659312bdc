"""DRR section: every rendered view of each CT with its projected organs outlined, one colour per structure; for a
run made in slab mode, its slab DRRs."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np

from unimiss_monai.conventions import display_2d
from unimiss_monai.data.drr_run_folder import record_path, unfinished_run_problem

from ..document import Figure, Note, Paragraph, Section, Table, fmt
from ..images import draw_outlines, figure_png, grey_rgb, legend_below
from ..run_folder import RunFolder, read_json

__all__ = ["DRR_GROUPS", "drr_section", "group_projected_labels"]

#: report structure -> TotalSegmentator names (exact) or prefixes ending in "*" merged into it
DRR_GROUPS: dict[str, tuple[str, ...]] = {
    "lung_left": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
    "lung_right": ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
    "heart": ("heart", "heart_*"),
    "liver": ("liver",),
    "spleen": ("spleen",),
    "kidney_left": ("kidney_left",),
    "kidney_right": ("kidney_right",),
    "stomach": ("stomach",),
    "aorta": ("aorta",),
    "spine": ("vertebrae_*",),
    "clavicle_left": ("clavicula_left", "clavicle_left"),
    "clavicle_right": ("clavicula_right", "clavicle_right"),
}
#: projected thickness (mm) above which a pixel belongs to a structure, as in the CXR segmentation sample masks
THICKNESS_MM = 1.0
_VIEW_ORDER = ["AP", "PA", "LAT_LEFT", "LL", "LAT_RIGHT", "RL"]
#: CTs, failures and slabs per view shown; the rest are counted and pointed to
_MAX_CASES, _MAX_FAILURES, _MAX_SLABS = 3, 3, 6


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)


def group_projected_labels(thickness: np.ndarray, channel_names: dict[int, str],
                           threshold: float = THICKNESS_MM) -> dict[str, np.ndarray]:
    """Binary masks per report structure from projected thickness ``(..., L)`` (mm per channel).

    Args:
        thickness: projected thickness, channels last.
        channel_names: channel index -> TotalSegmentator structure name.
        threshold: a pixel belongs to a structure where the summed thickness of its members exceeds this.

    Returns:
        ``{structure: bool mask}`` for the structures of :data:`DRR_GROUPS` present in the projection.
    """
    out = {}
    for group, patterns in DRR_GROUPS.items():
        channels = [i for i, n in channel_names.items() if _matches(n, patterns) and i < thickness.shape[-1]]
        if channels:
            mask = thickness[..., channels].sum(-1) > threshold
            if mask.any():
                out[group] = mask
    return out


def _views(case_dir, case: str) -> list[tuple[str, object, object]]:
    found = []
    for path in case_dir.glob(f"{glob.escape(case)}_*.nii.gz"):
        m = re.fullmatch(re.escape(case) + r"_([A-Z_]+)\.nii\.gz", path.name)
        if m and not m.group(1).endswith("_labels"):
            labels = case_dir / f"{case}_{m.group(1)}_labels.nii.gz"
            found.append((m.group(1), path, labels if labels.is_file() else None))
    return sorted(found, key=lambda v: _view_key(v[0]))


def _view_key(view: str) -> tuple[int, str]:
    return _VIEW_ORDER.index(view) if view in _VIEW_ORDER else 99, view


def _slab_views(folder: Path, case: str, training: list[dict]) -> dict[str, list[tuple[int, Path, str]]]:
    """Slab DRRs of ``case``: view -> ``[(slab, path, slices)]`` by slab.

    Read from the datalist's ``training`` pairs, which name each slab, its view, its slice range and its DRR (relative
    to the run folder); a folder whose datalist lists none of them (written before, or by hand) is read by file name,
    ``<case>/slabs/<case>_slab<i>_<VIEW>.nii.gz``.
    """
    found: dict[str, list[tuple[int, Path, str]]] = {}
    listed = [e for e in training if e.get("name") == case and isinstance(e.get("drr"), str)]
    for e in listed:
        path, slab, view = folder / e["drr"], e.get("slab"), e.get("view")
        if isinstance(slab, int) and isinstance(view, str) and path.is_file():
            slices = f"{e['start']}:{e['stop']}" if "start" in e and "stop" in e else ""
            found.setdefault(view, []).append((slab, path, slices))
    if not listed:
        for path in (folder / case / "slabs").glob(f"{glob.escape(case)}_slab*_*.nii.gz"):
            m = re.fullmatch(re.escape(case) + r"_slab(\d+)_([A-Z_]+)\.nii\.gz", path.name)
            if m:
                found.setdefault(m.group(2), []).append((int(m.group(1)), path, ""))
    return {v: sorted(found[v], key=lambda s: s[0]) for v in sorted(found, key=_view_key)}


def _whole_view_blocks(case_dir: Path, case: str, views) -> list:
    import nibabel as nib
    from matplotlib.figure import Figure as MplFigure

    names = {int(k): v for k, v in (read_json(case_dir / f"{case}_labels.json") or {}).items()}
    fig = MplFigure(figsize=(3.6 * len(views), 3.9))
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    shown: list[str] = []
    rows = []
    for ax, (view, image_path, label_path) in zip(axes, views):
        image = display_2d(np.asarray(nib.load(str(image_path)).dataobj, dtype=np.float32).squeeze())
        masks = {}
        if label_path is not None and names:
            thickness = display_2d(np.asarray(nib.load(str(label_path)).dataobj, dtype=np.float32))
            masks = group_projected_labels(thickness.reshape(*image.shape, -1), names)
        ax.imshow(draw_outlines(grey_rgb(image), masks))
        ax.set_title(view)
        ax.axis("off")
        shown += [n for n in masks if n not in shown]
        rows.append([view, f"{image.shape[1]} x {image.shape[0]}", fmt(float(np.nanmax(image)), 2), str(len(masks))])
    fig.subplots_adjust(bottom=0.01, top=0.93, wspace=0.04)
    legend_below(fig, shown)
    return [Figure(figure_png(fig), name=f"drr_{case}",
                   alt=f"DRRs of {case} ({', '.join(v[0] for v in views)}) with the outlines of "
                       f"{', '.join(shown) or 'no structure'}",
                   caption=f"{case}: {len(views)} views; outlines: projected organs of the CT's label map."),
            Table(["view", "detector (columns x rows)", "max line integral", "structures outlined"], rows)]


def _slab_blocks(case_dir: Path, case: str, slabs: dict[str, list[tuple[int, Path, str]]]) -> list:
    import nibabel as nib
    from matplotlib.figure import Figure as MplFigure

    total = max(len(s) for s in slabs.values())
    # a long CT has many slabs: a few evenly spaced ones, first and last included, keep the figure readable
    picked = sorted({round(i * (total - 1) / (_MAX_SLABS - 1)) for i in range(_MAX_SLABS)}) if total > _MAX_SLABS \
        else list(range(total))
    fig = MplFigure(figsize=(2.4 * len(picked), 2.7 * len(slabs)))
    axes = fig.subplots(len(slabs), len(picked), squeeze=False)
    rows, numbers = [], set()
    for ax_row, (view, entries) in zip(axes, slabs.items()):
        for ax in ax_row:
            ax.axis("off")
        for ax, (slab, path, slices) in zip(ax_row, [entries[i] for i in picked if i < len(entries)]):
            numbers.add(slab)  # a view missing some slab files shows other slabs at the same places
            img = nib.load(str(path))
            image = display_2d(np.asarray(img.dataobj, dtype=np.float32).squeeze())
            # the slab's detector is resized to a square pixel grid: its affine keeps the true (anisotropic) spacing
            col_mm, row_mm = (float(np.linalg.norm(img.affine[:3, i])) for i in (0, 1))
            ax.imshow(grey_rgb(image), aspect=row_mm / col_mm if col_mm > 0 and row_mm > 0 else 1.0)
            ax.set_title(f"{view} slab {slab}" + (f" ({slices})" if slices else ""), fontsize=9)
        rows.append([view, str(len(entries)), f"{image.shape[1]} x {image.shape[0]}",
                     f"{col_mm:.2f} x {row_mm:.2f}"])
    fig.subplots_adjust(bottom=0.01, top=0.92, wspace=0.04, hspace=0.25)
    shown = "all" if len(picked) == total else f"{len(picked)} of {total}, evenly spaced"
    return [Figure(figure_png(fig), name=f"drr_{case}_slabs",
                   alt=f"Slab DRRs of {case} ({', '.join(slabs)}), slabs {', '.join(map(str, sorted(numbers)))}",
                   caption=f"{case}: slab DRRs ({shown}; slice range of the CT in parentheses) in true proportions, "
                           f"from {case_dir / 'slabs'}."),
            Table(["view", "slabs", "detector (columns x rows)", "pixel (mm, column x row)"], rows)]


def _slab_depth(folder: Path, cases: list[str]) -> float | None:
    for case in cases:
        done = read_json(record_path(folder, case))
        settings = done.get("settings") if isinstance(done, dict) else None
        depth = settings.get("slab_depth") if isinstance(settings, dict) else None
        if isinstance(depth, (int, float)) and depth > 0:
            return float(depth)
    return None


def drr_section(run: RunFolder) -> Section:
    section = Section("drr", "DRR generation")
    folder = run.bundle("drr_generation")
    if unfinished := unfinished_run_problem(folder):  # what is shown below is part of a run, and said to be
        section.add(Note(unfinished + "; the DRRs below are those of the CTs it finished."))
    datalist = read_json(folder / "datalist.json")
    datalist = datalist if isinstance(datalist, dict) else {}
    failures = [f for f in datalist.get("failures") or [] if isinstance(f, dict)]
    training = [e for e in datalist.get("training") or [] if isinstance(e, dict)]
    listed = {e.get("name") for e in [*(datalist.get("testing") or []), *training] if isinstance(e, dict)}
    cases = sorted(n for n in listed if n) or sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []
    if not cases:
        section.add(Note(f"No DRRs found in {folder}: " + ("every CT failed (below)." if failures else
                                                           run.to_make("drr_generation", "the DRR bundle "
                                                                       "(configs/inference.json)") + ".")))
    found = {case: (_views(folder / case, case), _slab_views(folder, case, training))
             for case in cases[:_MAX_CASES]}
    if any(views for views, _ in found.values()):
        section.add(Paragraph(
            "Cone-beam digitally reconstructed radiographs of the CT (exact Siddon ray casting), hung as radiographs "
            "are read: head up, the patient's right on the image left for AP and PA alike. Each outline is a "
            f"TotalSegmentator structure of the CT projected onto the detector (projected thickness over "
            f"{THICKNESS_MM:g} mm): the same exact projection gives the CXR segmentation bundle its training masks."))
    if any(slabs for _, slabs in found.values()):
        depth = _slab_depth(folder, cases)
        section.add(Paragraph(
            "This run was made in slab mode (UniMiSS+ CT-DRR pairs): each CT was cut into axial slabs"
            + (f" of {depth:g} mm" if depth else "") + ", each rendered on a detector fitted to it and resized, with "
            "no projected organs. The slab CTs and their DRRs are in <case>/slabs/"
            + (f", the pairs listed under \"training\" in {folder / 'datalist.json'}." if datalist else ".")))
    for case, (views, slabs) in found.items():
        if views:
            section.add(*_whole_view_blocks(folder / case, case, views))
        if slabs:
            section.add(*_slab_blocks(folder / case, case, slabs))
        if not views and not slabs:
            section.add(Note(f"{folder / case}: no DRR files (<case>_<VIEW>.nii.gz, or "
                             "slabs/<case>_slab<i>_<VIEW>.nii.gz in slab mode)."))
    if len(cases) > _MAX_CASES:
        section.add(Note(f"DRRs of {_MAX_CASES} of {len(cases)} CTs shown; the others are in {folder}."))
    if failures:
        more = len(failures) - _MAX_FAILURES
        section.add(Note(f"{len(failures)} CT(s) failed: "
                         + "; ".join(f"{f.get('name')}: {f.get('error')}" for f in failures[:_MAX_FAILURES])
                         + (f"; and {more} more" if more > 0 else "")
                         + f". All are listed under \"failures\" in {folder / 'datalist.json'}."))
    return section
