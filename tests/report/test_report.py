"""The report of a synthetic run folder: every section, every picture decodes and shows something, offline."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

from unimiss_monai.data.writers import OUTPUT_MARKER
from unimiss_monai.report import report
from unimiss_monai.report.command import ReportIncomplete, main
from unimiss_monai.report.palette import colour
from unimiss_monai.report.run_folder import RunFolder

from .html_checks import SECTION_IDS, check_page
from .synthetic_run import CXR, make_run


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run, samples = make_run(root)
    return run, samples, report(run, samples=samples)


def test_page_has_every_section_and_valid_pictures(written):
    run, _, html_path = written
    assert html_path == run / "report.html"
    pictures = check_page(html_path.read_text())
    # DRR sheet, 3 pretraining figures, CXR overlay, CT mosaics (2), 2 ROC + 2 saliency, label efficiency, timing
    assert len(pictures) >= 12


def test_sections_show_what_the_run_holds(written):
    _, _, html_path = written
    text = html_path.read_text()
    assert "Could not be built" not in text and "could not be built" not in text
    # the CXR test metrics table lists every structure with its Dice from the evaluation file
    for i, name in enumerate(CXR):
        assert re.search(rf"<td>{name} \(#[0-9a-f]{{6}}\)</td><td class=\"num\">{0.5 + 0.04 * i:.3f}</td>", text), name
    # the k-NN probe rows and the label-efficiency table come from their files
    assert "0.400" in text and "scratch" in text and "[0.400, 0.600]" in text
    assert "+0.050" in text and "[-0.010, 0.110]" in text  # the paired difference and its interval
    # exact commands of the recorded steps
    assert "-c pass" in text


def test_outlines_use_the_palette(written):
    """The CXR overlay draws the heart outline in the heart colour of the shared palette."""
    _, _, html_path = written
    pictures = check_page(html_path.read_text())
    heart = np.asarray(colour("heart"))
    assert any((np.abs(p.astype(int) - heart).sum(-1) == 0).sum() > 20 for p in pictures)


def test_markdown_twin_has_the_same_sections_and_pictures(written):
    run, _, html_path = written
    md = (run / "report.md").read_text()
    page = html_path.read_text()
    titles = re.findall(r"^## (.+)$", md, flags=re.M)
    html_titles = [html.unescape(t) for t in re.findall(r"<h2[^>]*>(.*?)</h2>", page, flags=re.S)]
    assert len(titles) == len(SECTION_IDS) and titles == html_titles
    links = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", md)
    assert links and all((run / link).is_file() for link in links)
    assert len(links) == len(check_page(page))  # every picture of the page, and no other


def test_missing_outputs_give_notes_not_errors(tmp_path, capsys):
    """A run folder with only the demo's (empty) step record in it still gets every section, each saying what to run;
    one with nothing of a run in it is refused in one line, and nothing is written there."""
    (tmp_path / "run").mkdir()
    assert main([str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {tmp_path / 'run'} holds no run (no demo_steps.json, unimiss_* bundle folder or "
                   f"label_efficiency.json); run `bash tools/demo.sh {tmp_path / 'run'}` first, or pass the folder a "
                   "run wrote")
    assert not any((tmp_path / "run").iterdir())
    # one bundle's output folder given for the run: the folder above it is named
    (tmp_path / "run" / "unimiss_ct_classification" / "eval").mkdir(parents=True)
    (tmp_path / "run" / "unimiss_ct_classification" / "eval" / "metrics.json").write_text("{}")
    assert main([str(tmp_path / "run" / "unimiss_ct_classification")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'run' / 'unimiss_ct_classification'} is one bundle's output folder, not a run folder; "
        f"pass the folder that holds the unimiss_* folders: {(tmp_path / 'run').resolve()}")
    import shutil

    shutil.rmtree(tmp_path / "run" / "unimiss_ct_classification")
    (tmp_path / "run" / "demo_steps.json").write_text('{"steps": []}')
    html_path = report(tmp_path / "run", samples=None)
    text = html_path.read_text()
    for key in SECTION_IDS:
        assert f'id="{key}"' in text
    assert text.count('class="note"') >= len(SECTION_IDS) - 1
    assert "tools/demo.sh" in text


def test_the_console_names_the_stage_folders_without_a_run_and_the_folders_not_read(tmp_path, capsys):
    """Runs made with the bundles' own --output_dir names gave a page of "run this step" notes beside one stage's
    results, and the console said only where the page was, as for a whole run."""
    run = tmp_path / "outputs"
    (run / "pretraining-smoke" / "models").mkdir(parents=True)  # a run the report does not read: named
    (run / "demo_steps.json").write_text('{"steps": []}')
    assert main([str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"report: {run / 'report.html'}  (Markdown: {run / 'report.md'})"
    assert out[1].startswith("report: no run output in 6 of the 6 stage folders it reads (unimiss_drr_generation, "
                             "unimiss_pretraining, "), out
    assert "; folders not read: pretraining-smoke; " in out[1] and "report_files" not in out[1], out


@pytest.mark.parametrize("output", [None, "configs/train.json", "docs/README.md", "docs/label_efficiency.json",
                                    "models/smoke/model.pt"])
def test_bundle_folders_without_a_run_output_are_refused(tmp_path, capsys, output):
    """A folder of empty bundle folders, or of bundle sources (configs, docs, as ``bundles/`` is), was taken for a
    run: exit 0 and a page of "run this first" notes written into it. Refused in one line, and nothing written."""
    run = tmp_path / "run"
    for name in ("unimiss_ct_segmentation", "unimiss_pretraining"):
        (run / name).mkdir(parents=True)
        if output:
            (run / name / output).parent.mkdir(parents=True, exist_ok=True)
            (run / name / output).write_text("{}")
    before = _tree(tmp_path)
    assert main([str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {run} holds no run (its bundle folders (unimiss_ct_segmentation, unimiss_pretraining) "
                   "hold no output of a run (datalist.json, models/model.pt, loss_curves.json, eval/ or inference/ "
                   "results) and there is no demo_steps.json or label-efficiency study); run `bash tools/demo.sh "
                   f"{run}` first, or pass the folder a run wrote")
    assert _tree(tmp_path) == before and not (run / "report.html").exists()


@pytest.mark.parametrize("output", ["unimiss_drr_generation/datalist.json", "unimiss_pretraining/models/model.pt",
                                    "unimiss_pretraining/loss_curves.json",
                                    "unimiss_ct_classification/eval/metrics.json",
                                    "unimiss_ct_segmentation/inference/summary.json", "demo_steps.json",
                                    "label_efficiency/label_efficiency.json",
                                    "studies/cxr/label_efficiency.json"])
def test_one_output_of_a_run_is_enough_for_a_report(tmp_path, output):
    (tmp_path / "run" / output).parent.mkdir(parents=True)
    (tmp_path / "run" / output).write_text("{}")
    assert RunFolder(tmp_path / "run").holds_a_run


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run folder") and "tools/demo.sh" in err and "\n" not in err


def test_a_file_given_as_the_run_folder_is_called_a_file(tmp_path, capsys):
    """It said "run folder ... does not exist" of a file that does; the folder holding it is suggested when it is a
    run folder."""
    run, samples = make_run(tmp_path)
    assert main([str(run / "demo_steps.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {str(run / 'demo_steps.json')!r} is a file, not a run folder; pass the folder "
                   f"tools/demo.sh wrote (here {str(run)!r}, which holds it)")
    assert main([str(run), "--samples", str(run / "demo_steps.json")]) == 1
    assert "is a file, not a folder; pass the samples folder the run used" in capsys.readouterr().err


def test_a_broken_output_costs_only_its_section_and_the_command_fails(tmp_path, capsys):
    """The page is written with the reason in the broken section; the command exits 1 (it exited 0)."""
    run, samples = make_run(tmp_path)
    (run / "unimiss_pretraining" / "loss_curves.json").write_text("{not json")
    with pytest.raises(ReportIncomplete, match=r"report.html written, but 1 section\(s\) could not be built "
                                               r"\(\w+\); each shows its reason there"):
        report(run, samples=samples)
    text = (run / "report.html").read_text()
    check_page(text)
    assert "This section could not be built" in text and "loss_curves.json" in text
    assert text.count("This section could not be built") == 1
    assert main([str(run), "--samples", str(samples)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {run / 'report.html'} written, but 1 section(s)")


def _tree(folder):
    """Every file under ``folder`` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_with_md_suffix_is_refused_before_anything_is_written(tmp_path, capsys):
    """``--out notes.md`` would have the Markdown twin overwrite the HTML page: refused, in one line."""
    (tmp_path / "run").mkdir()
    before = _tree(tmp_path)
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "notes.md")]) == 1
    err = capsys.readouterr().err.strip()
    assert "notes.md" in err and ".html" in err and "\n" not in err
    assert _tree(tmp_path) == before and not (tmp_path / "notes.md").exists()
    with pytest.raises(ValueError, match="notes.html"):
        report(tmp_path / "run", out=tmp_path / "notes.MD")
    # a stray word after the run folder, which the package's command line reads as --out, was written as a page
    # named "extra" (no suffix) with its twin "extra.md"
    from unimiss_monai.cli import main as cli_main

    with pytest.raises(ValueError, match=r"extra: not an \.html file name \(a second word after RUN_DIR is read as "
                                         r"--out\); .* --out \S*extra\.html$"):
        cli_main(["report", str(tmp_path / "run"), str(tmp_path / "extra")])
    assert _tree(tmp_path) == before
    # a page inside a bundle's output folder: that bundle's rerun stopped on it as a file of the user's
    case = tmp_path / "run" / "unimiss_drr_generation" / "ct01"
    case.mkdir(parents=True)
    before = _tree(tmp_path)
    for out in (case / "r.html", case.parent / "r.html"):
        with pytest.raises(ValueError, match=rf"^--out {out}: lies inside the bundle output folder "
                                             rf"{case.parent}, whose reruns stop on files they did not write; .* "
                                             rf"--out {tmp_path / 'run' / 'report.html'}$"):
            report(tmp_path / "run", out=out)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("foreign", ["page.md", "page.html"])
def test_a_foreign_page_at_the_outputs_is_left_as_it_was(tmp_path, capsys, foreign):
    (tmp_path / "run" / "unimiss_pretraining").mkdir(parents=True)
    (tmp_path / "run" / "unimiss_pretraining" / "loss_curves.json").write_text("{}")  # a run's output: not refused
    mine = tmp_path / foreign
    mine.write_bytes(b"# my own notes\r\n\r\nnot a report\n")
    before = _tree(tmp_path)
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "page.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert str(mine) in err and "\n" not in err and "was not written by" in err
    assert _tree(tmp_path) == before


def test_report_reruns_into_its_own_outputs_but_not_into_a_foreign_picture_folder(tmp_path, capsys):
    run, samples = make_run(tmp_path)
    out = tmp_path / "site" / "page.html"
    report(run, out=out, samples=samples)
    # a picture an earlier run drew and this one does not: listed in the folder's marker, as that run wrote it
    stale = out.parent / "page_files" / "from_an_earlier_run.png"
    stale.write_bytes(b"old")
    marker = out.parent / "page_files" / OUTPUT_MARKER
    marker.write_text(marker.read_text() + "from_an_earlier_run.png\n")
    # a picture of the user's put into that folder stops the rerun, naming it, and nothing is replaced
    mine = out.parent / "page_files" / "my_sketch.png"
    mine.write_bytes(b"mine")
    before = _tree(out.parent)
    with pytest.raises(FileExistsError, match="my_sketch.png was not written by unimiss_monai"):
        report(run, out=out, samples=samples)
    assert _tree(out.parent) == before
    mine.unlink()
    assert report(run, out=out, samples=samples) == out  # its own page, twin and pictures are replaced
    md = (out.parent / "page.md").read_text()
    links = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", md)
    assert links and all((out.parent / link).is_file() for link in links)
    assert not stale.exists()  # the picture folder is replaced whole
    check_page(out.read_text())
    # a picture folder of the user's of the same name is not written into: refused before anything is written
    foreign = out.parent / "other_files"
    foreign.mkdir()
    (foreign / "holiday.png").write_bytes(b"mine")
    before = _tree(out.parent)
    assert main([str(run), "--out", str(out.parent / "other.html"), "--samples", str(samples)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(foreign) in err and "\n" not in err
    assert _tree(out.parent) == before
