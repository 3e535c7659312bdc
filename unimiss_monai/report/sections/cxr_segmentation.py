"""CXR segmentation section: predicted outlines on the real radiograph and on held-out DRRs, and the evaluation's
metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unimiss_monai.conventions import display_2d
from unimiss_monai.data.image_formats import split_image_name

from ..document import Figure, Note, Paragraph, Section
from ..images import draw_outlines, figure_png, grey_rgb, legend_below
from ..run_folder import RunFolder, how_trained, inference_cases, inference_note, read_json, stale_notes
from ..splits import case_words, evaluated_split, split_words
from .segmentation_tables import segmentation_table, unpaired_segmentation_note

__all__ = ["DEFAULT_STRUCTURES", "cxr_segmentation_section", "load_masks"]

DEFAULT_STRUCTURES = ["lung_left", "lung_right", "heart", "clavicle_left", "clavicle_right"]


def load_masks(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """``{structure: (rows, cols) bool}`` from a written multi-label mask ``(X, Y[, 1], C)`` in display order."""
    import nibabel as nib

    data = np.asarray(nib.load(str(path)).dataobj)
    data = data.reshape(data.shape[0], data.shape[1], -1)  # (X, Y, C): drop the singleton slice axis
    if data.shape[-1] != len(names):
        raise ValueError(f"{path}: {data.shape[-1]} mask channels but {len(names)} structure names {names}; "
                         "pass the structures the bundle was trained with")
    shown = display_2d(data)
    return {n: shown[..., i] > 0 for i, n in enumerate(names)}


def _structures(run: RunFolder) -> list[str]:
    """The structure names of the run's masks: the sample set's for a run on the sample data, else the evaluation's."""
    samples = read_json(run.samples / "samples.json") if run.samples and run.sample_data else None
    names = ((samples or {}).get("datasets", {}).get("cxr_segmentation", {}) or {}).get("structures")
    report = read_json(run.bundle("cxr_segmentation") / "eval" / "segmentation_report.json") or {}
    return list(names or report.get("structures") or DEFAULT_STRUCTURES)


def _panel(ax, image: np.ndarray, masks: dict[str, np.ndarray], title: str) -> None:
    ax.imshow(draw_outlines(grey_rgb(image), masks))
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def cxr_segmentation_section(run: RunFolder) -> Section:
    from matplotlib.figure import Figure as MplFigure

    from unimiss_monai.data.xray import load_radiograph

    section = Section("cxr-segmentation", "Chest X-ray segmentation")
    home = run.bundle("cxr_segmentation")
    section.add(*(Note(note) for note in stale_notes(home).values()))
    names = _structures(run)
    real = "" if run.synthetic else "the real radiograph RG1_UNCR (a different patient and a real detector) and to "
    section.add(Paragraph(
        f"The 2D network {how_trained(home)} on DRRs of the sample CT with exactly projected "
        f"masks, then applied to {real}DRRs at poses no training image uses. Outlines: the predicted masks on the "
        "input's own grid." if run.sample_data else
        f"The 2D network {how_trained(home)} on the images of its datalist, then applied to the inputs below. "
        "Outlines: the predicted masks on the input's own grid."))
    cases = [c for c in inference_cases(home / "inference") if c["status"] == "ok"]
    # references (and inputs by name) only from the sample data the run read: a user's own image of a sample's name
    # would be shown beside that sample's masks
    samples = run.sample_set("cxr_segmentation") if run.sample_data else None
    panels = []
    for c in cases:
        stem = split_image_name(c.get("input") or c["case"])[0]
        seg = Path(c["output"]) if c.get("output") else home / "inference" / f"{stem}_seg.nii.gz"
        source = Path(c["input"]) if c.get("input") else None
        if source is None and samples:
            source = next((p for p in (samples / "inference").glob(f"{stem}.*")), None)
        if not seg.is_file() or source is None or not source.exists():
            continue
        reference = samples / "labels" / f"{stem}.nii.gz" if samples else None
        panels.append((stem, source, seg, reference if reference is not None and reference.is_file() else None))
    if not panels:
        section.add(Note(f"No inference outputs with their inputs in {home / 'inference'}: " + run.to_make(
            "cxr_segmentation_inference", "unimiss_cxr_segmentation's inference (configs/inference.json)") + "."))
    # the real radiograph first: it is the picture that tells whether the model transfers
    panels = sorted(panels, key=lambda p: (p[3] is not None, p[0]))[:4]
    # a DRR with a reference is shown as a held-out case the table scores; the real radiograph is scored by none
    unpaired = unpaired_segmentation_note(home, [p[0] for p in panels if p[3] is not None], [p[2] for p in panels])
    section.add(*[Note(unpaired)] if unpaired else [])
    section.add(*[Note(n) for n in [inference_note(home / "inference", len(panels), "segmented radiographs")] if n])
    for stem, source, seg, reference in panels:
        image = display_2d(np.asarray(load_radiograph(source))[0])
        pred = load_masks(seg, names)
        cols = 2 if reference is not None else 1
        fig = MplFigure(figsize=(4.6 * cols, 4.6 * image.shape[0] / image.shape[1] + 0.5))
        axes = fig.subplots(1, cols, squeeze=False)[0]
        _panel(axes[0], image, pred, f"{stem}: prediction")
        if reference is not None:
            _panel(axes[1], image, load_masks(reference, names), f"{stem}: reference (projected CT labels)")
        shown = [n for n in names if pred.get(n) is not None and pred[n].any()] or names
        fig.subplots_adjust(bottom=0.01, top=0.94, wspace=0.03)
        legend_below(fig, names, ncol=len(names))
        # without the samples folder a held-out DRR has no reference either: it is then not called a real radiograph
        unknown = reference is None and samples is None
        kind = "held-out DRR" if reference is not None else "input" if unknown else "real radiograph"
        section.add(Figure(
            figure_png(fig), name=f"cxr_seg_{stem}",
            alt=f"{kind} {stem} with predicted outlines of {', '.join(shown)}"
                + (" beside the reference outlines" if reference is not None else ""),
            caption=f"{stem} ({kind}, {image.shape[1]} x {image.shape[0]} pixels)"
                    + ("; right: the exact projection of the CT's labels." if reference is not None else
                       "; no reference is shown: the report finds references only in this package's sample data, "
                       "which was not found (for a demo run, pass --samples with the folder its samples step wrote)."
                       if unknown else
                       "; no reference masks exist for this image. The network saw only DRRs of one CT in "
                       "training, so this picture shows how far it transfers to a real detector and patient.")))
    split = evaluated_split(run, "cxr_segmentation", read_json(home / "eval" / "segmentation_report.json"))
    noun = "DRRs" if run.sample_data else "images"
    section.add(*segmentation_table(home / "eval", f"CXR segmentation on the {split_words(split, noun)}",
                                    case_words(split), unpaired=bool(unpaired),
                                    to_make=run.to_evaluate("cxr_segmentation")))
    return section
