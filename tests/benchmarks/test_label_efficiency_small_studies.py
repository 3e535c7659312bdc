"""The smallest studies a user tries first: scratch alone (a learning curve, no paired difference) and two seeds
(intervals wider than the score can be), written as a well-formed table and intervals inside the metric's range."""

from __future__ import annotations

import struct

from label_efficiency_fakes import META, SETTINGS, FakeRunner

from unimiss_monai.benchmarks.label_efficiency.design import StudyDesign
from unimiss_monai.benchmarks.label_efficiency.plot import label_efficiency_png
from unimiss_monai.benchmarks.label_efficiency.statistics import mean_interval, paired_difference
from unimiss_monai.benchmarks.label_efficiency.study import build_results, run_study
from unimiss_monai.benchmarks.label_efficiency.table import results_markdown


def _table(markdown: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("|")]


def _png_width(png: bytes) -> int:
    return struct.unpack(">I", png[16:20])[0]


def test_a_scratch_only_study_writes_a_table_and_figure_of_its_curve_without_a_difference(tmp_path):
    design = StudyDesign((0.25, 1.0), (0, 1), ("scratch",))
    results = build_results(run_study(design.runs(16), FakeRunner(), tmp_path, SETTINGS), design, META)
    markdown = results_markdown(results)
    header, rule, *rows = _table(markdown)
    # as many cells in every line as in the header, and none of them empty: the table renders
    assert header == ["fraction (labelled items)", "scratch"]
    assert rule == ["---", "---"] and len(rows) == 2 and all(len(r) == 2 and all(r) for r in rows)
    assert "Difference: -" not in markdown and "No paired difference: --arms holds scratch alone" in markdown
    assert "--arms scratch,pretrained" in markdown
    # the figure is the curve alone, not beside an empty panel of differences
    full = StudyDesign((0.25, 1.0), (0, 1), ("scratch", "pretrained"))
    paired = build_results(run_study(full.runs(16), FakeRunner(), tmp_path / "paired", SETTINGS), full, META)
    assert _png_width(label_efficiency_png(results)) < 0.6 * _png_width(label_efficiency_png(paired))


def test_adding_an_arm_to_a_scratch_only_study_keeps_its_runs(tmp_path):
    design = StudyDesign((0.25, 1.0), (0, 1), ("scratch",))
    run_study(design.runs(16), FakeRunner(), tmp_path, SETTINGS)
    runner = FakeRunner()
    run_study(StudyDesign((0.25, 1.0), (0, 1), ("scratch", "pretrained")).runs(16), runner, tmp_path, SETTINGS)
    assert runner.calls and all(c.startswith("pretrained_") for c in runner.calls)


class _Spread:
    """Two seeds far apart: the t interval (12.7 standard errors each side) reaches past 0-1."""

    def __call__(self, spec, run_dir):
        scores = {"scratch": (0.30, 0.62), "pretrained": (0.90, 0.20)}[spec.arm]
        return {"score": scores[spec.seed]}


def test_two_seed_intervals_are_cut_to_the_metrics_range_and_say_so(tmp_path):
    design = StudyDesign((1.0,), (0, 1), ("scratch", "pretrained"))
    results = build_results(run_study(design.runs(8), _Spread(), tmp_path, SETTINGS), design, META)
    score = results["results"]["scratch"]["1"]
    raw = mean_interval([0.30, 0.62])
    assert raw["ci_low"] < 0 and raw["ci_high"] > 1
    assert (score["ci_low"], score["ci_high"]) == (0.0, 1.0)
    assert score["clipped_to"] == [0.0, 1.0] and score["unclipped"] == [raw["ci_low"], raw["ci_high"]]
    diff = results["paired_difference"]["1"]
    raw = paired_difference([0.90, 0.20], [0.30, 0.62])
    assert (diff["ci_low"], diff["ci_high"]) == (-1.0, 1.0) and diff["unclipped"] == [raw["ci_low"], raw["ci_high"]]
    assert diff["includes_zero"] and diff["mean"] == raw["mean"]
    assert "[-1.000, +1.000] (cut to the -1 to 1 a difference can take) over 2 seeds" in diff["conclusion"]
    markdown = results_markdown(results)
    assert "[-1.000, +1.000]*; includes 0" in markdown and "\\* the interval reached past the -1 to 1" in markdown
    # an interval inside the range is left as computed, with no mark
    narrow = build_results(run_study(design.runs(8), FakeRunner(), tmp_path / "narrow", SETTINGS), design, META)
    assert "clipped_to" not in narrow["results"]["scratch"]["1"] and "*" not in results_markdown(narrow)
