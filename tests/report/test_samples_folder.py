"""The report finds the samples folder a run read wherever it is written from: a relative ``--out`` of the samples
step is taken from the folder that step ran in, and without the samples a held-out DRR is not called a real
radiograph."""

from __future__ import annotations

import sys

from unimiss_monai.report.document import Figure
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.cxr_segmentation import cxr_segmentation_section
from unimiss_monai.report.steps import run_step

from .synthetic_run import make_run


def test_a_relative_samples_folder_is_found_from_anywhere(tmp_path, monkeypatch):
    repo, run, elsewhere = tmp_path / "repo", tmp_path / "runs" / "demo", tmp_path / "elsewhere"
    (repo / "samples").mkdir(parents=True)
    (repo / "samples" / "samples.json").write_text('{"datasets": {}}')
    elsewhere.mkdir()
    monkeypatch.chdir(repo)  # the demo runs its steps from the clone
    assert run_step(run, "samples", [sys.executable, "-c", "pass", "--out", "samples"]) == 0
    for where in (repo, elsewhere):
        monkeypatch.chdir(where)
        assert RunFolder(run).samples == repo / "samples"


def test_without_the_samples_a_held_out_drr_is_not_called_a_real_radiograph(tmp_path):
    run, samples = make_run(tmp_path)
    found = [b for b in cxr_segmentation_section(RunFolder(run, samples)).blocks if isinstance(b, Figure)]
    assert [f.caption.split(";")[0] for f in found] == ["test_000 (held-out DRR, 64 x 64 pixels)"]
    lost = RunFolder(run)
    lost.samples = None  # as a report written from a folder the samples cannot be found from
    (figure,) = [b for b in cxr_segmentation_section(lost).blocks if isinstance(b, Figure)]
    assert figure.caption == ("test_000 (input, 64 x 64 pixels); no reference is shown: the report finds references "
                              "only in this package's sample data, which was not found (for a demo run, pass "
                              "--samples with the folder its samples step wrote).")
    assert "real radiograph" not in figure.alt
