"""The files the docs point readers to exist: benchmark JSONs, tools, modules, configs and linked pages.

A path in backticks or a Markdown link, starting at one of the repository's top-level folders, must name a file or
folder of the repository: from the repository root, from the page's own folder, or (for the model-zoo layout that
the README describes once for every bundle) inside some bundle. Placeholders (``<name>``, ``*``, ``{...}``) and the
files that runs write (``models/``) are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted({ROOT / "README.md", ROOT / "ARCHITECTURE.md", *ROOT.glob("docs/*.md"), *ROOT.glob("bundles/*/docs/*.md")})
TOP = r"(?:docs|tools|unimiss_monai|tests|bundles|configs)/"
REFERENCE = re.compile(rf"`({TOP}[^`\s]+)`|\]\(({TOP}[^)\s#]+)")
BUNDLES = sorted(ROOT.glob("bundles/*"))  # bundle-relative paths (the model-zoo layout) resolve in any bundle


def _references(page: Path) -> list[str]:
    found = []
    for match in REFERENCE.finditer(page.read_text(encoding="utf-8")):
        ref = (match.group(1) or match.group(2)).rstrip(".,:;")
        if not re.search(r"[<>*{}\[\]$]", ref) and "/models/" not in f"/{ref}":
            found.append(ref)
    return found


def _exists(page: Path, ref: str) -> bool:
    return any((base / ref).exists() for base in (ROOT, page.parent, *BUNDLES))


def test_the_pattern_finds_backticked_and_linked_paths(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("see `docs/a.json`, [x](docs/b.md) and `bundles/<name>/models/model.pt`; `outputs/c`\n")
    assert _references(page) == ["docs/a.json", "docs/b.md"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_path_a_page_points_to_exists(page):
    missing = [ref for ref in _references(page) if not _exists(page, ref)]
    assert not missing, f"{page.relative_to(ROOT)} points to paths that do not exist: {missing}"
