"""Per-structure Dice, HD95 and surface Dice tables from a bundle's ``segmentation_report.json``."""

from __future__ import annotations

from pathlib import Path

from unimiss_monai.data.image_formats import split_image_name

from ..document import Note, Table, fmt
from ..pairing import unpaired_note
from ..palette import hex_colour
from ..run_folder import failed_note, inference_summary, read_json

__all__ = ["metric_rows", "segmentation_table", "unpaired_segmentation_note"]


def metric_rows(report: dict) -> list[list[str]]:
    """One row per structure: name (with its colour), Dice, HD95, surface Dice, cases scored for it, of those
    the cases whose prediction misses it entirely, and those whose prediction holds it where the reference has none."""
    rows = []
    for name in report.get("structures", []):
        m = report.get("mean", {}).get(name, {})
        rows.append([f"{name} ({hex_colour(name)})", fmt(m.get("dice")), fmt(m.get("hd95"), 1),
                     fmt(m.get("surface_dice")), str(m.get("dice_n", "-")), str(m.get("missed", "-")),
                     str(m.get("false_positives", "-"))])
    return rows


def unpaired_segmentation_note(home: Path, held_out: list[str], outputs: list[Path]) -> str | None:
    """:func:`~..pairing.unpaired_note` for the inference outputs ``outputs`` a segmentation section pictures beside
    the table of ``eval/segmentation_report.json``: the ones named in ``held_out`` are shown as cases the evaluation
    scored, and every output precedes the inference summary that lists it. ``None`` without an evaluation."""
    scores = home / "eval" / "segmentation_report.json"
    report = read_json(scores)
    if not isinstance(report, dict):
        return None
    # a report before the cases were listed (or with none scored) cannot say which it scored; a case that failed was
    # evaluated too (its own line says why), and the pictured held-out cases are of the test split: another split's
    # report names none of them, as it should
    scored = [str(c.get("case")) for c in report.get("cases") or [] if isinstance(c, dict)]
    scored += [split_image_name(Path(str(f.get("case"))).name)[0] for f in report.get("failed") or []
               if isinstance(f, dict)]
    if not scored or report.get("split", "test") != "test":
        scored = None
    summary = inference_summary(home / "inference")
    return unpaired_note(home, scores, scored=scored, shown=held_out,
                         written=[(output, summary) for output in outputs] if summary else [],
                         step="evaluate and inference steps")


def segmentation_table(eval_dir: Path, what: str, cases: str = "held-out case(s)", unpaired: bool = False,
                       to_make: str = "run the bundle's evaluation") -> list:
    """Blocks for the evaluation in ``eval_dir``: the table, or a note saying what is missing and ``to_make`` it
    (:meth:`RunFolder.to_make`). ``cases`` names the scored cases in the caption (held out only where the evaluated
    split is); ``unpaired``: the section's pictures are not of the predictions scored
    (:func:`unpaired_segmentation_note`), and the caption says so."""
    report = read_json(eval_dir / "segmentation_report.json")
    if not report:
        return [Note(f"No evaluation in {eval_dir} (segmentation_report.json): {to_make}.")]
    notes = [Note(n) for n in [failed_note(report, eval_dir / "segmentation_report.json")] if n]
    if report.get("num_cases") == 0 and notes:
        return notes
    rows = metric_rows(report)
    if report.get("mean_dice") is not None:  # the figure the evaluation computed, not one from rounded cells
        rows.append(["mean over structures", fmt(report["mean_dice"]), "", "", "", "", ""])
    # a report before the unit was recorded measured in mm; a PNG reference has no grid, so pixels
    recorded = report.get("distance_unit")
    unit = {"pixel": "pixels", "mixed": "mm or pixels"}.get(recorded, "mm")
    mixed = " (no mean: some references are pictures without a pixel size, see the CSV)" if recorded == "mixed" else ""
    return [*notes, Table(["structure (colour)", "Dice", f"HD95 ({unit})", "surface Dice", "cases", "missed",
                           "false positives"], rows,
                  caption=f"{what}: {report.get('num_cases', '?')} {cases}, mean per structure. HD95: the "
                          "larger of the two directed 95th-percentile surface distances (prediction to reference and "
                          f"back), in {unit}{mixed}, over the cases whose reference and prediction both hold the "
                          f"structure; surface Dice at the bundle's tolerance (in {unit}). Missed: cases whose "
                          "prediction lacks a structure of the reference; false positives: cases whose prediction "
                          "holds a structure the reference lacks (Dice and surface Dice 0 for both). A dash: not "
                          "defined." + (" These are not the scores of the predictions pictured above (see the note)."
                                        if unpaired else ""))]
