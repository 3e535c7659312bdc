"""The report's label-efficiency section on the smallest studies: scratch alone (no paired difference to describe)
and two seeds, whose intervals reach past the metric's range (studies written before the study cut them too)."""

from __future__ import annotations

import json

from unimiss_monai.report.document import Figure, Note, Table
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.label_efficiency import label_efficiency_section


def _section(tmp_path, study: dict):
    path = tmp_path / "label_efficiency" / "unimiss_ct_classification" / "label_efficiency.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(study))
    path.with_suffix(".png").write_bytes(b"\x89PNG not decoded here")
    return label_efficiency_section(RunFolder(tmp_path)).blocks


def _scratch_only(ci_low=-0.142, ci_high=1.064) -> dict:
    """A scratch-only, two-seed study as an earlier version wrote it: its interval as computed."""
    return {"bundle": "unimiss_ct_classification", "metric": "macro AUC", "seeds": [0, 1], "arms": ["scratch"],
            "reference": "scratch", "interval": {"method": "t", "confidence": 0.95}, "complete": True,
            "results": {"scratch": {"1": {"mean": 0.461, "std": 0.067, "ci_low": ci_low, "ci_high": ci_high,
                                          "n": 2}}},
            "paired_difference": {}, "paired_differences": {}, "failures": []}


def test_a_two_seed_interval_past_the_metrics_range_is_shown_cut_to_it_and_said(tmp_path):
    blocks = _section(tmp_path, _scratch_only())
    (scores,) = [b for b in blocks if isinstance(b, Table)]
    assert scores.rows == [["scratch", "1", "0.461", "[0.000, 1.000]*", "2"]]
    notes = " ".join(b.text for b in blocks if isinstance(b, Note))
    assert "Intervals marked * reached past what their quantity can be (0 to 1 for a macro AUC" in notes
    assert "from 2 seeds says little" in notes


def test_a_scratch_only_study_is_not_described_as_a_paired_comparison(tmp_path):
    blocks = _section(tmp_path, _scratch_only(0.2, 0.7))
    (figure,) = [b for b in blocks if isinstance(b, Figure)]
    assert "against scratch" not in figure.caption + figure.alt and "Right" not in figure.caption
    notes = [b.text for b in blocks if isinstance(b, Note)]
    assert len(notes) == 1 and notes[0].startswith("No paired difference: this study trained scratch alone")
    (scores,) = [b for b in blocks if isinstance(b, Table)]
    assert scores.rows[0][3] == "[0.200, 0.700]"  # inside the range: as computed, no mark


def test_a_difference_cut_by_the_study_is_marked(tmp_path):
    study = _scratch_only(0.2, 0.7)
    study["arms"] = ["scratch", "pretrained"]
    cut = {"arm": "pretrained", "reference": "scratch", "mean": 0.09, "ci_low": -1.0, "ci_high": 1.0,
           "clipped_to": [-1.0, 1.0], "unclipped": [-6.4, 6.6], "includes_zero": True, "n": 2, "conclusion": "c"}
    study["paired_differences"] = {"pretrained": {"1": cut}}
    blocks = _section(tmp_path, study)
    paired = [b for b in blocks if isinstance(b, Table)][1]
    assert paired.rows[0][3] == "[-1.000, 1.000]*"
    assert any("Intervals marked *" in b.text for b in blocks if isinstance(b, Note))
