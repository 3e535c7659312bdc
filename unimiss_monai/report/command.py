"""``python -m unimiss_monai report RUN_DIR``: write ``report.html`` and ``report.md`` for a demo run folder."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from unimiss_monai.data.drr_run_folder import unfinished_run_problem
from unimiss_monai.data.writers import OUTPUT_MARKER, check_replaceable, save_bytes, staged_dir

from .document import Note, Section
from .render import GENERATOR, render_html, render_markdown
from .run_folder import RunFolder, holds_run_output
from .sections.summary import SMOKE_WARNING, smoke_run

logger = logging.getLogger(__name__)

# first line of every Markdown twin: only a file starting with it may be replaced by a rerun (as OUTPUT_MARKER marks
# the folders this package writes); an HTML comment, so it does not show. The HTML page names itself in its head.
_MD_MARKER = f"<!-- {OUTPUT_MARKER}: written by unimiss_monai report; a rerun may replace this file -->"
_HTML_MARKER = f'<meta name="generator" content="{GENERATOR}">'

__all__ = ["STAGE_FOLDERS", "build_sections", "main", "report"]

#: the stage folders of a run, as tools/demo.sh names them: the report reads these and nothing else
STAGE_FOLDERS = ("unimiss_drr_generation", "unimiss_pretraining", "unimiss_cxr_segmentation", "unimiss_ct_segmentation",
                 "unimiss_cxr_classification", "unimiss_ct_classification")


def build_sections(run: RunFolder, failed: list[str] | None = None) -> list[Section]:
    """Every section of :data:`~unimiss_monai.report.sections.SECTIONS`. A section that cannot be built (a broken
    output file) still appears, holding the one-line reason, so the rest of the page is not lost; its name is added to
    ``failed`` when given."""
    from .sections import SECTIONS

    out = []
    for build in SECTIONS:
        try:
            out.append(build(run))
        except Exception as err:  # noqa: BLE001 - one broken output must not cost the whole page; it is shown
            name = build.__name__.replace("_section", "")
            logger.warning("report section %s: %s: %s", name, type(err).__name__, err)
            if failed is not None:
                failed.append(name)
            out.append(Section(name.replace("_", "-"), name.replace("_", " ").capitalize(),
                               [Note(f"This section could not be built: {type(err).__name__}: {err}")]))
    return out


def report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
           samples: str | os.PathLike | None = None) -> Path:
    """Write the report of ``run_dir``; returns the path of the HTML page.

    Args:
        run_dir: a run folder of ``tools/demo.sh`` (the bundles' outputs and ``demo_steps.json``).
        out: the HTML file, named ``*.html``; defaults to ``<run_dir>/report.html``. Its Markdown twin (``<name>.md``)
            and the twin's pictures (``<name>_files/``) go beside it.
        samples: the sample-data folder the run read (inputs and reference labels); defaults to the one its
            ``samples`` step wrote.

    Raises:
        ReportIncomplete: after writing the page, when a section could not be built (a broken output file).
    """
    run = RunFolder(Path(run_dir), Path(samples) if samples is not None else None)
    html_path = Path(out) if out is not None else run.root / "report.html"
    md_path, image_dir = html_path.with_suffix(".md"), f"{html_path.stem}_files"
    if html_path.suffix.lower() == ".md":
        raise ValueError(f"--out {html_path}: the Markdown twin would overwrite the HTML page; give it an .html "
                         f"suffix, e.g. --out {html_path.with_suffix('.html')}")
    if html_path.suffix.lower() not in (".html", ".htm"):  # also a stray word after RUN_DIR, which fire reads as --out
        page = html_path / "report.html" if html_path.is_dir() else html_path.with_name(html_path.name + ".html")
        raise ValueError(f"--out {html_path}: not an .html file name (a second word after RUN_DIR is read as --out); "
                         f"give the page an .html suffix, e.g. --out {page}")
    place = html_path.resolve().parent
    inside = next((b for b in run.bundle_folders if place == b.resolve() or b.resolve() in place.parents), None)
    if inside is not None:  # a bundle's rerun takes what it did not write there for the user's, and stops on it
        raise ValueError(f"--out {html_path}: lies inside the bundle output folder {inside}, whose reruns stop on "
                         f"files they did not write; write the page beside it, e.g. --out {run.root / 'report.html'}")
    if not run.holds_a_run:  # a page of "run this first" notes is no report: nothing is written
        if unfinished := unfinished_run_problem(run.bundle("drr_generation")) or unfinished_run_problem(run.root):
            raise FileNotFoundError(unfinished)
        empty = ", ".join(p.name for p in run.bundle_folders)
        what = (f"its bundle folders ({empty}) hold no output of a run (datalist.json, models/model.pt, "
                "loss_curves.json, eval/ or inference/ results) and there is no demo_steps.json or "
                "label-efficiency study" if empty else
                "no demo_steps.json, unimiss_* bundle folder or label_efficiency.json")
        # one bundle's output folder (as the demo names them): the run is the folder above it
        if run.root.resolve().name.startswith("unimiss_") and holds_run_output(run.root):
            raise FileNotFoundError(f"{run.root} is one bundle's output folder, not a run folder; pass the folder "
                                    f"that holds the unimiss_* folders: {run.root.resolve().parent}")
        raise FileNotFoundError(f"{run.root} holds no run ({what}); run `bash tools/demo.sh {run.root}` first, "
                                "or pass the folder a run wrote")
    failed: list[str] = []
    sections = build_sections(run, failed)
    title = "UniMiSS demo run" if run.by_demo else "UniMiSS run"  # --samples alone says what data, not which steps
    data = (f"sample data: {run.samples or 'not found'}" if run.sample_data
            else "data: as each step's command names it (not this package's sample data)")
    subtitle = [f"Run folder: {run.root.resolve()}", f"Report written {time.strftime('%Y-%m-%d %H:%M')}; {data}"]
    if smoke_run(run):  # said before any number is read, not only inside the summary
        subtitle.append(SMOKE_WARNING)
    markdown, files = render_markdown(title, subtitle, sections, image_dir=image_dir)
    # nothing is written until every target is known to be new or this tool's own earlier output
    _check_own(html_path, _HTML_MARKER)
    _check_own(md_path, _MD_MARKER)
    if files:
        check_replaceable(html_path.parent / image_dir)
    save_bytes(render_html(title, subtitle, sections), html_path)
    if files:
        with staged_dir(html_path.parent / image_dir) as tmp:  # replaced whole: no stale pictures of earlier runs
            for rel, png in files.items():
                save_bytes(png, tmp / Path(rel).relative_to(image_dir))
    save_bytes(f"{_MD_MARKER}\n{markdown}", md_path)
    if failed:  # the page is written (the rest of it is worth reading), but the report is not whole: a non-zero exit
        raise ReportIncomplete(f"{html_path} written, but {len(failed)} section(s) could not be built "
                               f"({', '.join(failed)}); each shows its reason there: mend those outputs and rerun")
    return html_path


class ReportIncomplete(ValueError):
    """The page is written, but some of its sections hold only the reason they could not be built."""


def _check_own(path: Path, marker: str) -> None:
    """Raise ``FileExistsError`` when ``path`` exists and is not a page this command wrote (``marker`` near its top)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_file() and not path.is_symlink():
        with path.open("rb") as f:
            if marker.encode() in f.read(4096):
                return
    raise FileExistsError(f"{path} already exists and was not written by the report; it is not replaced: move it "
                          "away or choose another --out")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unimiss_monai report",
                                     description="Write report.html (self-contained) and report.md for a demo run.")
    parser.add_argument("run_dir", help="run folder written by tools/demo.sh")
    parser.add_argument("--out", default=None, help="HTML file (default RUN_DIR/report.html)")
    parser.add_argument("--samples", default=None, help="sample-data folder the run read (default: from the run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = report(args.run_dir, args.out, args.samples)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"report: {path}  (Markdown: {path.with_suffix('.md')})")
    if unread := _unread(RunFolder(Path(args.run_dir), Path(args.samples) if args.samples else None), path):
        print(f"report: {unread}")
    return 0


def _unread(run: RunFolder, page: Path) -> str | None:
    """What the report ``page`` of ``run`` shows no result of, said beside its path: a folder of runs made with
    bundles' own ``--output_dir`` names gave a page of "run this step" notes, which the console called a report like
    any other. ``None`` when every stage folder holds a run's output."""
    absent = [name for name in STAGE_FOLDERS if not holds_run_output(run.root / name)]
    # a label-efficiency study's folder is read for its study alone: no stage folder is missing from it
    if not absent or not ((run.root / "demo_steps.json").is_file() or run.bundle_folders):
        return None
    own = {(page.parent / f"{page.stem}_files").resolve(), *((run.root / name).resolve() for name in STAGE_FOLDERS)}
    try:
        others = sorted(p.name for p in run.root.iterdir()
                        if p.is_dir() and p.resolve() not in own and not p.name.startswith("."))
    except OSError:  # the page is written: a folder that cannot be listed only leaves this part unsaid
        others = []
    return (f"no run output in {len(absent)} of the {len(STAGE_FOLDERS)} stage folders it reads ({', '.join(absent)})"
            + (f"; folders not read: {', '.join(others)}" if others else "") + "; a stage's page section says "
            "what to run (tools/demo.sh passes the bundles --output_dir <run folder>/<stage folder>, and eval/ or "
            "inference/ below it for those steps)")
