"""DRR view names: the bundle docs list every name the code takes, and a run says which view an alias stands for."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from unimiss_monai.drr import VIEW_ALIASES, canonical_views

DOCS = Path(__file__).resolve().parents[2] / "bundles" / "unimiss_drr_generation" / "docs" / "README.md"


def test_the_docs_list_every_view_name_the_code_takes():
    row = next(line for line in DOCS.read_text(encoding="utf-8").splitlines() if line.startswith("| `views` |"))
    names = row.split("|")[3]  # the 'what' column: `VIEW` (or `ALIAS`, ...), ...
    documented = {}
    for view, aliases in re.findall(r"`([A-Z_]+)` \(or ([^)]*)\)", names):
        documented[view] = view
        documented.update({alias: view for alias in re.findall(r"`([A-Z_]+)`", aliases)})
    assert documented == VIEW_ALIASES


def test_an_alias_is_said_once_as_the_view_it_stands_for():
    said = []
    views = canonical_views(["LATERAL", "ap", "lat-left", "rl", "LATERAL"],
                            say=lambda message, *args: said.append(message % args))
    assert views == ["LAT_LEFT", "AP", "LAT_LEFT", "LAT_RIGHT", "LAT_LEFT"]
    # a view's own name, in another case or with '-', is no alias
    assert said == ["view 'LATERAL' is LAT_LEFT", "view 'rl' is LAT_RIGHT"]
    assert canonical_views(["LL"]) == ["LAT_LEFT"]  # nobody to tell: nothing said, nothing fails


def test_a_drr_run_logs_the_alias(tmp_path, caplog):
    from unimiss_monai.engines import DRRGenerator

    with caplog.at_level(logging.INFO, logger="unimiss_monai.engines.drr_generation"):
        generator = DRRGenerator(None, tmp_path / "out", views=["AP", "Lateral"], progress=False)
    assert generator.views == ["AP", "LAT_LEFT"]
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("view ")] == [
        "view 'Lateral' is LAT_LEFT"]
