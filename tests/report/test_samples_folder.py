"""The report finds the samples folder a run read wherever it is written from: a relative ``--out`` of the samples
step is taken from the folder that step ran in, and without the samples a held-out DRR is not called a real
radiograph."""

from __future__ import annotations

import sys
from pathlib import Path

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


def test_a_folder_that_is_no_samples_output_is_refused_as_samples(tmp_path, capsys):
    """``--samples`` given a folder holding one DICOM was taken as the sample data, and the page described the demo's
    real CT and radiograph for it."""
    from unimiss_monai.report.command import main

    run, samples = make_run(tmp_path)
    dicoms, other = tmp_path / "rgin", tmp_path / "other"
    dicoms.mkdir()
    (dicoms / "RG1_UNCR.dcm").write_bytes(b"DICM")
    other.mkdir()
    (other / "samples.json").write_text('{"cases": []}')  # a file of that name that no samples command wrote
    not_manifest = "its samples.json is not a samples manifest"
    for folder, problem in ((dicoms, "it holds no samples.json"), (other, not_manifest)):
        assert main([str(run), "--samples", str(folder)]) == 1
        err = capsys.readouterr().err
        assert err == (f"error: --samples {str(folder)!r} is not a samples folder ({problem}; `python -m unimiss_monai "
                       "samples --out FOLDER` writes one); pass the folder the run's samples step wrote, or leave "
                       "--samples out for runs on your own data\n")
        assert not (run / "report.html").exists() and not (run / "report.md").exists()
    assert main([str(run), "--samples", str(samples)]) == 0  # the samples folder itself still is one


def _summary_prose(page: Path) -> str:
    (prose,) = [line for line in page.with_suffix(".md").read_text().splitlines()
                if line.startswith(("The chain", "Stages with outputs"))]
    return prose


def test_samples_given_to_a_folder_of_two_classifier_runs_say_only_those_ran(tmp_path):
    """With --samples, a folder holding only the two classifiers' runs was titled "UniMiSS demo run" and said that
    DRRs, pretraining, segmentation and inference on the real CT had run."""
    import shutil

    from unimiss_monai.report import report

    run, samples = make_run(tmp_path)
    (run / "demo_steps.json").unlink()  # not written by tools/demo.sh: the runs were put there
    for stage in ("drr_generation", "pretraining", "cxr_segmentation", "ct_segmentation"):
        shutil.rmtree(run / f"unimiss_{stage}")
    shutil.rmtree(run / "label_efficiency")
    page = report(run, samples=samples)
    assert page.with_suffix(".md").read_text().splitlines()[1] == "# UniMiSS run"
    prose = _summary_prose(page)
    assert prose.startswith("Stages with outputs in this folder, on one real chest CT (with its TotalSegmentator "
                            "labels) and one real radiograph: CXR classification, CT classification; evaluation")
    for never_ran in ("DRR", "pretraining", "segmentation", "chain", "inference on"):
        assert never_ran not in prose, never_ran


def test_a_demo_chain_names_only_the_steps_whose_outputs_are_there(tmp_path):
    import shutil

    from unimiss_monai.report import report

    run, samples = make_run(tmp_path)
    shutil.rmtree(run / "unimiss_drr_generation")
    shutil.rmtree(run / "unimiss_ct_segmentation")
    shutil.rmtree(run / "unimiss_ct_classification" / "inference")
    page = report(run, samples=samples)
    assert page.with_suffix(".md").read_text().splitlines()[1] == "# UniMiSS demo run"
    prose = _summary_prose(page)
    assert prose.startswith("The chain, on one real chest CT (with its TotalSegmentator labels) and one real "
                            "radiograph: UniMiSS+ pretraining on CT slabs, their DRRs and radiographs -> CXR "
                            "segmentation, CXR classification and CT classification ")
    assert prose.endswith(" -> inference on the real radiograph and the classifiers' held-out test images. The table "
                          "gives each stage's scores; the sections below show the pictures behind them.")
    assert "DRRs of the CT" not in prose and "real CT" not in prose and "CT segmentation" not in prose
