"""The report of a synthetic run folder: every section, every picture decodes and shows something, offline."""

from __future__ import annotations

import re

import numpy as np
import pytest

from unimiss_monai.report import report
from unimiss_monai.report.command import main
from unimiss_monai.report.palette import colour

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
    run, _, _ = written
    md = (run / "report.md").read_text()
    titles = re.findall(r"^## (.+)$", md, flags=re.M)
    assert len(titles) == len(SECTION_IDS)
    links = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", md)
    assert links and all((run / link).is_file() for link in links)


def test_missing_outputs_give_notes_not_errors(tmp_path):
    """A run folder with nothing in it still gets every section, each saying what to run."""
    (tmp_path / "run").mkdir()
    html_path = report(tmp_path / "run", samples=None)
    text = html_path.read_text()
    for key in SECTION_IDS:
        assert f'id="{key}"' in text
    assert text.count('class="note"') >= len(SECTION_IDS) - 1
    assert "tools/demo.sh" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run folder") and "tools/demo.sh" in err and "\n" not in err


def test_a_broken_output_costs_only_its_section(tmp_path):
    run, samples = make_run(tmp_path)
    (run / "unimiss_pretraining" / "loss_curves.json").write_text("{not json")
    text = report(run, samples=samples).read_text()
    check_page(text)
    assert "This section could not be built" in text and "loss_curves.json" in text
    assert text.count("This section could not be built") == 1
