"""What the package imports is what ``pyproject.toml`` installs: every third-party module imported at a module's top
level comes from a core dependency (an install without extras, as ``tools/demo.sh`` makes, must run the whole chain),
and every other one from a core dependency or an extra."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from package_sources import SOURCES, imports

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution, where they differ
DISTRIBUTION = {"PIL": "pillow", "yaml": "pyyaml", "ignite": "pytorch-ignite"}
# installed with `pip install --no-deps` by tools/_env.sh (its own requirements pull torchvision): bench-drr's DiffDRR
NO_DEPS = {"diffdrr"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _imports() -> dict[str, dict[str, bool]]:
    """``{distribution: {file: imported at the module's top level}}`` over the package's third-party imports."""
    found: dict[str, dict[str, bool]] = {}
    for module, path, tree in SOURCES:
        top_level = {id(node) for node in tree.body}
        for node, name in imports(module, path, tree):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "unimiss_monai":
                continue
            dist = DISTRIBUTION.get(top, top).lower().replace("_", "-")
            where = found.setdefault(dist, {})
            rel = str(path.relative_to(REPO))
            where[rel] = where.get(rel, False) or id(node) in top_level
    return found


def _requirements() -> tuple[set[str], set[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for group in project["optional-dependencies"].values() for r in group}
    return core, extras


def test_modules_imported_at_top_level_are_core_dependencies():
    core, _ = _requirements()
    eager = {dist: sorted(f for f, top in files.items() if top) for dist, files in _imports().items()}
    missing = {dist: files for dist, files in eager.items() if files and dist not in core}
    assert not missing, f"imported at a module's top level but not a core dependency in pyproject.toml: {missing}"


def test_every_imported_module_is_installed_by_a_dependency_or_an_extra():
    core, extras = _requirements()
    missing = sorted(set(_imports()) - core - extras - NO_DEPS)
    assert not missing, f"imported by the package but in no dependency list of pyproject.toml: {missing}"
