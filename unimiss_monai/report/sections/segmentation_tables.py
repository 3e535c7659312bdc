"""Per-structure Dice, HD95 and surface Dice tables from a bundle's ``segmentation_report.json``."""

from __future__ import annotations

from pathlib import Path

from ..document import Note, Table, fmt
from ..palette import hex_colour
from ..run_folder import read_json

__all__ = ["metric_rows", "segmentation_table"]


def metric_rows(report: dict) -> list[list[str]]:
    """One row per structure: name (with its colour), Dice, HD95 (mm), surface Dice, cases with the structure."""
    rows = []
    for name in report.get("structures", []):
        m = report.get("mean", {}).get(name, {})
        rows.append([f"{name} ({hex_colour(name)})", fmt(m.get("dice")), fmt(m.get("hd95"), 1),
                     fmt(m.get("surface_dice")), str(m.get("dice_n", "-"))])
    return rows


def segmentation_table(eval_dir: Path, what: str) -> list:
    """Blocks for the held-out evaluation in ``eval_dir``: the table, or a note saying what is missing."""
    report = read_json(eval_dir / "segmentation_report.json")
    if not report:
        return [Note(f"No evaluation in {eval_dir} (segmentation_report.json): run the evaluate step of tools/demo.sh.")]
    rows = metric_rows(report)
    dice = [float(r[1]) for r in rows if r[1] != "-"]
    if dice:
        rows.append(["mean over structures", fmt(sum(dice) / len(dice)), "", "", ""])
    return [Table(["structure (colour)", "Dice", "HD95 (mm)", "surface Dice", "cases"], rows,
                  caption=f"{what}: {report.get('num_cases', '?')} held-out case(s), mean per structure. HD95: 95th "
                          "percentile of the symmetric surface distance; surface Dice at the bundle's tolerance. A "
                          "dash: the structure is absent from the reference or the prediction.")]
