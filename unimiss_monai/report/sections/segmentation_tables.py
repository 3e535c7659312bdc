"""Per-structure Dice, HD95 and surface Dice tables from a bundle's ``segmentation_report.json``."""

from __future__ import annotations

from pathlib import Path

from ..document import Note, Table, fmt
from ..palette import hex_colour
from ..run_folder import failed_note, read_json

__all__ = ["metric_rows", "segmentation_table"]

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


def segmentation_table(eval_dir: Path, what: str, cases: str = "held-out case(s)") -> list:
    """Blocks for the evaluation in ``eval_dir``: the table, or a note saying what is missing. ``cases`` names the
    scored cases in the caption (held out only where the evaluated split is)."""
    report = read_json(eval_dir / "segmentation_report.json")
    if not report:
        return [Note(f"No evaluation in {eval_dir} (segmentation_report.json): run the evaluate step of tools/demo.sh.")]
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
                          "defined.")]
