"""CT segmentation section: axial, coronal and sagittal mosaics of the real CT with per-structure outlines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from unimiss_monai.conventions import CT_AXCODES, CT_AXIS_LABELS, CT_TO_NETWORK, display_panels, network_spacing

from ..document import Figure, Note, Paragraph, Section
from ..images import draw_outlines, figure_png, grey_rgb, legend_below, resize_nearest
from ..run_folder import RunFolder, how_trained, inference_cases, inference_note, read_json, stale_notes
from ..splits import case_words, evaluated_split, split_words
from .segmentation_tables import segmentation_table, unpaired_segmentation_note

__all__ = ["DEFAULT_CLASSES", "HU_WINDOW", "ct_evaluation_words", "ct_segmentation_section", "load_network_order",
           "true_proportions"]

DEFAULT_CLASSES = ["liver", "spleen", "kidney_right", "kidney_left", "stomach", "pancreas", "lung", "heart", "aorta"]
#: display window (HU): lungs, soft tissue and bone all readable
HU_WINDOW = (-1000.0, 600.0)


def load_network_order(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A CT or label volume as the networks see it: ``(Z, X, Y)`` in :data:`CT_AXCODES`, and its spacing (mm)."""
    from monai.transforms import Orientation

    from unimiss_monai.transforms import LoadCTImage  # a series read as the bundle read it

    loaded = LoadCTImage(image_only=True, ensure_channel_first=True)(str(path))
    volume = Orientation(axcodes=CT_AXCODES, labels=CT_AXIS_LABELS)(loaded)
    spacing = network_spacing(np.asarray(volume.affine))
    return np.transpose(np.asarray(volume), CT_TO_NETWORK)[0], spacing


def true_proportions(plane: np.ndarray, aspect: float, label: bool = False) -> np.ndarray:
    """Stretch the rows of a display plane by ``aspect`` (row/column pixel ratio) so pixels become square."""
    rows = max(1, round(plane.shape[0] * aspect))
    if label:
        return resize_nearest(plane, (rows, plane.shape[1]))
    return ndimage.zoom(plane.astype(np.float32), (rows / plane.shape[0], 1), order=1)


def _reference(run: RunFolder, stem: str, classes: list[str]) -> Path | None:
    """The label map of the sample CT mapped to the bundle's classes, when the run's input is that CT (a run on the
    sample data: a user's own CT of the sample's name is no sample)."""
    source = run.sample_set("drr_generation") if run.sample_data else None
    if source is None or not (source / f"{stem}_labels.nii.gz").is_file():
        return None
    return source / f"{stem}_labels.nii.gz"


def _map_reference(path: Path, classes: list[str]) -> np.ndarray | None:
    from unimiss_monai.data.totalsegmentator import DEFAULT_STRUCTURES, read_totalsegmentator_structures, structure_lookup

    table_csv = path.with_name(path.name.replace(".nii.gz", ".csv"))
    try:
        table, names = structure_lookup({c: DEFAULT_STRUCTURES[c] for c in classes},
                                        read_totalsegmentator_structures(table_csv))
    except (KeyError, ValueError, FileNotFoundError):
        return None
    labels, _ = load_network_order(path)
    lut = np.zeros(int(labels.max()) + 1, dtype=np.uint8)
    for value, k in table.items():
        if value < lut.size:
            lut[value] = k
    return lut[labels.astype(np.int64)]


def _masks(labels: np.ndarray, classes: list[str]) -> dict[str, np.ndarray]:
    return {name: labels == k for k, name in enumerate(classes, start=1) if (labels == k).any()}


def _planes_figure(image, rows: list[tuple[str, np.ndarray]], classes, spacing, centre) -> bytes:
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(12.0, 3.7 * len(rows) + 0.3))
    axes = fig.subplots(len(rows), 3, squeeze=False, gridspec_kw={"wspace": 0.03, "hspace": 0.12})
    image_planes = display_panels(image, centre, spacing)
    for r, (title, labels) in enumerate(rows):
        for c, ((plane, grey, aspect), (_, lab, _)) in enumerate(zip(image_planes, display_panels(labels, centre, spacing))):
            rgb = grey_rgb(true_proportions(grey, aspect), window=HU_WINDOW)
            masks = _masks(true_proportions(lab, aspect, label=True), classes)
            axes[r, c].imshow(draw_outlines(rgb, masks, width=max(1, round(max(rgb.shape[:2]) / 250))))
            axes[r, c].set_title(f"{title}: {plane}", fontsize=10)
            axes[r, c].axis("off")
    present = [n for n in classes if any((lab == classes.index(n) + 1).any() for _, lab in rows)]
    fig.subplots_adjust(bottom=0.01, top=0.96)
    legend_below(fig, present, ncol=9)
    return figure_png(fig, dpi=90)


def _axial_strip(image, labels, classes, spacing, levels: int = 5) -> bytes:
    from matplotlib.figure import Figure as MplFigure

    occupied = np.nonzero((labels > 0).reshape(labels.shape[0], -1).any(1))[0]
    lo, hi = (occupied[0], occupied[-1]) if occupied.size else (0, labels.shape[0] - 1)
    zs = np.linspace(lo, hi, levels + 2)[1:-1].round().astype(int)[::-1]  # superior first
    fig = MplFigure(figsize=(2.6 * levels, 3.1))
    axes = fig.subplots(1, levels)
    for ax, z in zip(axes, zs):
        (_, grey, aspect), = display_panels(image, (z, 0, 0), spacing)[:1]
        (_, lab, _), = display_panels(labels, (z, 0, 0), spacing)[:1]
        ax.imshow(draw_outlines(grey_rgb(true_proportions(grey, aspect), window=HU_WINDOW),
                                _masks(true_proportions(lab, aspect, label=True), classes)))
        ax.set_title(f"slice {z} of {labels.shape[0]}", fontsize=9)
        ax.axis("off")
    fig.subplots_adjust(wspace=0.03, top=0.88, bottom=0.02)
    return figure_png(fig, dpi=90)


def ct_evaluation_words(run: RunFolder) -> tuple[str, str]:
    """What the CT evaluation scored, as the table's title and its name for the cases: only a test split is called
    held out (:func:`~unimiss_monai.report.splits.split_words`)."""
    report = read_json(run.bundle("ct_segmentation") / "eval" / "segmentation_report.json")
    split = evaluated_split(run, "ct_segmentation", report)
    return f"CT segmentation on the {split_words(split, 'slabs' if run.sample_data else 'cases')}", case_words(split)


def ct_segmentation_section(run: RunFolder) -> Section:
    section = Section("ct-segmentation", "CT segmentation")
    home = run.bundle("ct_segmentation")
    section.add(*(Note(note) for note in stale_notes(home).values()))
    summary = read_json(home / "inference" / "summary.json") or {}
    report = read_json(home / "eval" / "segmentation_report.json") or {}
    classes = list(summary.get("classes") or report.get("structures") or DEFAULT_CLASSES)
    trained_on = ("on three slabs of the sample chest CT (two more validate it)" if run.sample_data
                  else "on the CTs of its datalist")
    section.add(Paragraph(
        f"The 3D network {how_trained(home)} {trained_on}, then run by sliding window over the whole CT. Planes go "
        "through the heart, superior side up, "
        "the patient's right on the image left, in true proportions. Outlines: one colour per organ, the same in "
        "every picture."))
    done = [c for c in inference_cases(home / "inference") if c["status"] == "ok"]
    if not done:
        section.add(Note(f"No CT inference outputs in {home / 'inference'}: run the ct_segmentation_inference step "
                         "of tools/demo.sh."))
    # the whole CT pictured is no case of the evaluation (it scores slabs of it): only the outputs' times are compared
    shown = [Path(c["output"]) for c in done[:2] if c.get("output")]
    unpaired = unpaired_segmentation_note(home, [], shown)
    section.add(*[Note(unpaired)] if unpaired else [])
    at, pictured = len(section.blocks), 0
    for c in done[:2]:
        seg = Path(c["output"]) if c.get("output") else None
        stem = Path(seg.name.replace("_seg.nii.gz", "")) if seg else Path(str(c["case"]))
        source = Path(c["input"]) if c.get("input") else None
        if source is None and run.sample_data and run.sample_set("drr_generation") is not None:
            candidate = run.sample_set("drr_generation") / f"{stem.name}.nii.gz"
            source = candidate if candidate.is_file() else None
        if seg is None or not seg.is_file() or source is None or not source.exists():
            section.add(Note(f"{c['case']}: the segmentation or its input is missing; rerun the inference step."))
            continue
        image, spacing = load_network_order(source)
        pred = load_network_order(seg)[0].astype(np.int64)
        ref_path = _reference(run, stem.name, classes)
        reference = _map_reference(ref_path, classes) if ref_path is not None else None
        anchor = reference if reference is not None else pred
        heart = classes.index("heart") + 1 if "heart" in classes else None
        focus = (anchor == heart) if heart is not None and (anchor == heart).any() else anchor > 0
        centre = [int(v) for v in np.round(ndimage.center_of_mass(focus))] if focus.any() else None
        rows = [("prediction", pred)] + ([("reference", reference)] if reference is not None else [])
        section.add(Figure(
            _planes_figure(image, rows, classes, spacing, centre), name=f"ct_seg_{stem.name}",
            alt=f"Axial, coronal and sagittal planes of {stem.name} with predicted organ outlines"
                + (" above the reference (TotalSegmentator) outlines" if reference is not None else ""),
            caption=f"{stem.name}: {image.shape[1]} x {image.shape[2]} x {image.shape[0]} voxels, spacing "
                    f"{spacing[1]:.2f} x {spacing[2]:.2f} x {spacing[0]:.2f} mm"
                    + ("; bottom row: the CT's TotalSegmentator labels mapped to the bundle's classes."
                       if reference is not None else ".")))
        section.add(Figure(_axial_strip(image, pred, classes, spacing), name=f"ct_seg_{stem.name}_axial",
                           alt=f"Five axial slices of {stem.name} from superior to inferior with predicted outlines",
                           caption="Predicted outlines on five axial levels spanning the segmented range, superior "
                                   "first."))
        pictured += 1
    if told := inference_note(home / "inference", pictured, "segmented CTs"):  # said before the pictures it is of
        section.blocks.insert(at, Note(told))
    section.add(*segmentation_table(home / "eval", *ct_evaluation_words(run), unpaired=bool(unpaired),
                                    to_make=run.to_evaluate("ct_segmentation")))
    return section
