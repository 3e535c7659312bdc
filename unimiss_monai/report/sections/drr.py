"""DRR section: every rendered view of each CT with its projected organs outlined, one colour per structure."""

from __future__ import annotations

import re

import numpy as np

from unimiss_monai.conventions import display_2d

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
    for path in case_dir.glob(f"{case}_*.nii.gz"):
        m = re.fullmatch(re.escape(case) + r"_([A-Z_]+)\.nii\.gz", path.name)
        if m and not m.group(1).endswith("_labels"):
            labels = case_dir / f"{case}_{m.group(1)}_labels.nii.gz"
            found.append((m.group(1), path, labels if labels.is_file() else None))
    return sorted(found, key=lambda v: (_VIEW_ORDER.index(v[0]) if v[0] in _VIEW_ORDER else 99, v[0]))


def drr_section(run: RunFolder) -> Section:
    import nibabel as nib
    from matplotlib.figure import Figure as MplFigure

    section = Section("drr", "DRRs of the real CT")
    folder = run.bundle("drr_generation")
    datalist = read_json(folder / "datalist.json") or {}
    cases = sorted({e.get("name") for e in datalist.get("testing", []) if e.get("name")}) or sorted(
        p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not cases:
        return section.add(Note(f"No DRRs found in {folder}: run the drr_generation step of tools/demo.sh."))
    section.add(Paragraph(
        "Cone-beam digitally reconstructed radiographs of the CT (exact Siddon ray casting), hung as radiographs are "
        "read: head up, the patient's right on the image left for AP and PA alike. Each outline is a TotalSegmentator "
        f"structure of the CT projected onto the detector (projected thickness over {THICKNESS_MM:g} mm): the same "
        "exact projection gives the CXR segmentation bundle its training masks."))
    for case in cases[:3]:
        views = _views(folder / case, case)
        if not views:
            section.add(Note(f"{folder / case}: no DRR files (<case>_<VIEW>.nii.gz)."))
            continue
        names = {int(k): v for k, v in (read_json(folder / case / f"{case}_labels.json") or {}).items()}
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
            rows.append([view, f"{image.shape[1]} x {image.shape[0]}", fmt(float(np.nanmax(image)), 2),
                         str(len(masks))])
        fig.subplots_adjust(bottom=0.01, top=0.93, wspace=0.04)
        legend_below(fig, shown)
        section.add(Figure(figure_png(fig), name=f"drr_{case}",
                           alt=f"DRRs of {case} ({', '.join(v[0] for v in views)}) with the outlines of "
                               f"{', '.join(shown) or 'no structure'}",
                           caption=f"{case}: {len(views)} views; outlines: projected organs of the CT's label map."))
        section.add(Table(["view", "detector (columns x rows)", "max line integral", "structures outlined"], rows))
    failures = datalist.get("failures") or []
    if failures:
        section.add(Note(f"{len(failures)} CT(s) failed: " + "; ".join(f"{f.get('name')}: {f.get('error')}" for f in failures[:3])))
    return section
