"""label-efficiency at a microscopic scale: real bundle runs write the JSON and PNG, and the numbers are theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unimiss_monai.benchmarks.label_efficiency import label_efficiency, summarise

pytestmark = pytest.mark.integration


def test_summarise_interval_matches_t_distribution():
    s = summarise([0.5, 0.7, 0.6])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1)
    from scipy import stats

    assert s["ci95"][1] - s["mean"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.1 / 3**0.5, rel=1e-3)
    for n in (2, 5, 13):  # the built-in quantile table agrees with scipy
        s = summarise([float(i % 2) for i in range(n)])
        assert s["ci95"][1] - s["mean"] == pytest.approx(stats.t.ppf(0.975, n - 1) * s["std"] / n**0.5, rel=1e-3)
    assert summarise([0.4])["ci95"] is None


def test_micro_run_writes_json_and_png_from_real_reports(tmp_path):
    from unimiss_monai.data.samples import samples

    data = samples(str(tmp_path / "samples"), synthetic=True, only="cxr_segmentation")
    out = tmp_path / "le"
    path = label_efficiency(fractions="0.5", seeds=1, dataset_dir=data, output_dir=str(out), max_epochs=1,
                            pretrained=str(tmp_path / "absent.pt"), batch_size=2)
    summary = json.loads(Path(path).read_text())
    assert list(summary["results"]) == ["scratch"] and summary["pretrained"] is None
    (run,) = summary["runs"]
    assert run["num_labels"] == 4 and run["fraction"] == 0.5
    report = json.loads(Path(run["report"]).read_text())
    dice = [v["dice"] for v in report["mean"].values() if v["dice"] is not None]
    assert run["score"] == pytest.approx(sum(dice) / len(dice))
    assert summary["results"]["scratch"]["0.5"]["mean"] == pytest.approx(run["score"])
    assert (out / "label_efficiency.png").stat().st_size > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown bundle"):
        label_efficiency(bundle="nope")
    with pytest.raises(ValueError, match=r"fractions must be in \(0, 1\]"):
        label_efficiency(fractions="0,1.5")
