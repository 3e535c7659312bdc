"""The report's stale-result notes read a fine-tuned model (often hundreds of MB) only when a result records the
checksum to compare it with."""

from __future__ import annotations

import json


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def test_a_model_is_hashed_only_when_some_result_records_a_checksum(tmp_path, monkeypatch):
    """Results from before checksums were recorded are judged by file times alone: the report does not read a
    multi-hundred-MB model for nothing; one result that records a checksum makes it read the model once."""
    import os

    from unimiss_monai.report import run_folder

    home = tmp_path / "unimiss_ct_segmentation"
    model = _write(home / "models" / "model.pt", {})
    report = _write(home / "eval" / "segmentation_report.json", {"mean_dice": 0.8})
    os.utime(report, (model.stat().st_mtime + 60,) * 2)
    hashed = []
    monkeypatch.setattr(run_folder, "_cached_checksum", lambda *args: hashed.append(args[0]) or "1" * 64)
    assert run_folder.stale_notes(home) == {} and hashed == []
    _write(home / "inference" / "summary.json", {"num_cases": 1, "model_sha256": "1" * 64, "cases": []})
    assert run_folder.stale_notes(home) == {} and hashed == [str(model)]
