"""``python -m unimiss_monai report RUN_DIR``: write ``report.html`` and ``report.md`` for a demo run folder."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from unimiss_monai.data.writers import save_bytes

from .document import Note, Section
from .render import render_html, render_markdown
from .run_folder import RunFolder

logger = logging.getLogger(__name__)

__all__ = ["build_sections", "main", "report"]


def build_sections(run: RunFolder) -> list[Section]:
    """Every section of :data:`~unimiss_monai.report.sections.SECTIONS`. A section that cannot be built (a broken
    output file) still appears, holding the one-line reason, so the rest of the page is not lost."""
    from .sections import SECTIONS

    out = []
    for build in SECTIONS:
        try:
            out.append(build(run))
        except Exception as err:  # noqa: BLE001 - one broken output must not cost the whole page; it is shown
            name = build.__name__.replace("_section", "")
            logger.warning("report section %s: %s: %s", name, type(err).__name__, err)
            out.append(Section(name.replace("_", "-"), name.replace("_", " ").capitalize(),
                               [Note(f"This section could not be built: {type(err).__name__}: {err}")]))
    return out


def report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
           samples: str | os.PathLike | None = None) -> Path:
    """Write the report of ``run_dir``; returns the path of the HTML page.

    Args:
        run_dir: a run folder of ``tools/demo.sh`` (the bundles' outputs and ``demo_steps.json``).
        out: the HTML file; defaults to ``<run_dir>/report.html``. The Markdown twin ``report.md`` and its pictures
            (``report_files/``) go beside it.
        samples: the sample-data folder the run read (inputs and reference labels); defaults to the one its
            ``samples`` step wrote.
    """
    run = RunFolder(Path(run_dir), Path(samples) if samples is not None else None)
    html_path = Path(out) if out is not None else run.root / "report.html"
    sections = build_sections(run)
    title = "UniMiSS demo run"
    subtitle = [f"Run folder: {run.root.resolve()}",
                f"Report written {time.strftime('%Y-%m-%d %H:%M')}; sample data: {run.samples or 'not found'}"]
    save_bytes(render_html(title, subtitle, sections), html_path)
    markdown, files = render_markdown(title, subtitle, sections, image_dir=f"{html_path.stem}_files")
    for rel, png in files.items():
        save_bytes(png, html_path.parent / rel)
    save_bytes(markdown, html_path.with_suffix(".md"))
    return html_path


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
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"report: {path}  (Markdown: {path.with_suffix('.md')})")
    return 0
