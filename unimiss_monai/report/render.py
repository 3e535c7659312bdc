"""Render report sections as one self-contained HTML page (images embedded, no network) and as Markdown.

The HTML has no scripts and no external resources: it opens offline, from a mail attachment or a file share. The
layout is one readable column that shrinks with the window (laptop width and narrower).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from .document import Code, Figure, Note, Paragraph, Section, Table


#: names this package as the page's author, so that a rerun knows the page is its own to replace
GENERATOR = "unimiss_monai report"

__all__ = ["GENERATOR", "render_html", "render_markdown"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f;
       background: #fafafa; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
header h1 { margin: 0.2rem 0 0.2rem; font-size: 1.7rem; }
header p { margin: 0.2rem 0; color: #555; }
nav { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 0.9rem; margin: 0.8rem 0;
      display: flex; flex-wrap: wrap; gap: 0.3rem 1.1rem; }
nav a { white-space: nowrap; color: #0b57d0; text-decoration: none; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1.1rem 1rem; margin: 1rem 0; }
h2 { font-size: 1.3rem; margin: 0.4rem 0 0.6rem; border-bottom: 1px solid #eee; padding-bottom: 0.3rem; }
figure { margin: 0.8rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #444; margin-top: 0.2rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.92rem; display: block; overflow-x: auto; }
caption { text-align: left; font-size: 0.9rem; color: #444; padding-bottom: 0.2rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
pre { background: #f6f8fa; border: 1px solid #e3e3e3; padding: 0.6rem; overflow-x: auto; font-size: 0.82rem;
      white-space: pre-wrap; word-break: break-all; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4rem 0.7rem; }
"""


def _td(cell) -> str:
    text = str(cell)
    try:
        float(text)
        numeric = True
    except ValueError:
        numeric = text == "-"
    return f'<td class="num">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def _html_block(block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Note):
        return f'<p class="note">{html.escape(block.text)}</p>'
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Table):
        head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in block.header)
        rows = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in block.rows)
        caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        caption = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt, quote=True)}">'
                f"{caption}</figure>")
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(title: str, subtitle: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page as one string."""
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.key}" aria-labelledby="{s.key}-title"><h2 id="{s.key}-title">{html.escape(s.title)}</h2>\n'
        + "\n".join(_html_block(b) for b in s.blocks) + "</section>"
        for s in sections
    )
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in subtitle)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="{GENERATOR}">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><main><header><h1>{html.escape(title)}</h1>{lines}</header>"
        f'<nav aria-label="sections">{nav}</nav>\n{body}\n</main></body></html>\n'
    )


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, subtitle: Sequence[str], sections: Sequence[Section],
                    image_dir: str = "report_files") -> tuple[str, dict[str, bytes]]:
    """The Markdown twin and its pictures: ``(text, {relative path: PNG bytes})``; the pictures go beside it."""
    out = [f"# {title}", ""] + [f"{line}  " for line in subtitle] + [""]
    files: dict[str, bytes] = {}
    for s in sections:
        out += [f"## {s.title}", ""]
        for block in s.blocks:
            if isinstance(block, Paragraph):
                out += [block.text, ""]
            elif isinstance(block, Note):
                out += [f"> {block.text}", ""]
            elif isinstance(block, Code):
                out += ["```", block.text, "```", ""]
            elif isinstance(block, Table):
                if block.caption:
                    out += [f"*{block.caption}*", ""]
                out += ["| " + " | ".join(_md_cell(h) for h in block.header) + " |",
                        "|" + "---|" * len(block.header)]
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows] + [""]
            elif isinstance(block, Figure):
                # named by content, not position: a rerun replaces the same files instead of adding new ones
                path, k = f"{image_dir}/{block.name}.png", 1
                while path in files:
                    k += 1
                    path = f"{image_dir}/{block.name}_{k}.png"
                files[path] = block.png
                alt = block.alt.replace("]", ")").replace("[", "(")
                out += [f"![{alt}]({path})", ""] + ([f"*{block.caption}*", ""] if block.caption else [])
    return "\n".join(out), files
