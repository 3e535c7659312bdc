"""The rooms of ARCHITECTURE.md, enforced: import arrows point down the room list, no module over 400 lines, and every
transform, ignite handler and ``nn.Module`` lives in its room. Deprecation shims (modules built on
``unimiss_monai.utils.lazy.moved_names``) are only forwarding addresses and are left out."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from package_sources import PACKAGE, imports
from package_sources import SOURCES as ALL_SOURCES

# ARCHITECTURE.md, top to bottom: a room may import its own modules and any room of a later level, never one of its
# own level or above (visualize draws what metrics computes, so it sits above it)
LEVELS = [
    ("cli", "benchmarks", "release", "report"),
    ("engines",),
    ("handlers",),
    ("visualize",),
    ("metrics", "inferers"),
    ("networks", "losses", "transforms"),
    ("drr",),
    ("data",),
    ("conventions", "utils"),
]
LEVEL = {room: i for i, rooms in enumerate(LEVELS) for room in rooms}
# the one documented exception: the synthetic sample sets render DRRs of their phantoms
ALLOWED = {("unimiss_monai.data.sample_sets.", "drr")}
MAX_LINES = 400


def _is_shim(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "moved_names" for n in ast.walk(tree))


def _room(module: str) -> str:
    return module.split(".")[1]


def _imports(module: str, path: Path, tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, imported unimiss_monai module)`` of every import, at module level or inside functions."""
    return sorted({(node.lineno, name) for node, name in imports(module, path, tree) if name.startswith("unimiss_monai.")})


# the rooms' modules: the package's own __init__ and the __main__ entry points belong to no room
SOURCES = [(m, p, t) for m, p, t in ALL_SOURCES if m != "unimiss_monai" and p.name != "__main__.py"]
CHECKED = [(m, p, t) for m, p, t in SOURCES if not _is_shim(t)]


def test_every_room_is_declared():
    # the checks here and in test_dependencies.py pass vacuously on an empty or half-found package
    assert len(ALL_SOURCES) > 50 and len(CHECKED) > 50, (len(ALL_SOURCES), len(CHECKED))
    assert "unimiss_monai" in {m for m, _, _ in ALL_SOURCES}
    rooms = {_room(m) for m, _, _ in SOURCES}
    assert rooms <= set(LEVEL), f"rooms missing from ARCHITECTURE.md and LEVELS: {sorted(rooms - set(LEVEL))}"


def test_imports_point_down_the_room_list():
    bad = []
    for module, path, tree in CHECKED:
        room = _room(module)
        for line, target in _imports(module, path, tree):
            other = _room(target)
            if other == room or any(module.startswith(m) and other == r for m, r in ALLOWED):
                continue
            if other not in LEVEL or LEVEL.get(room, -1) >= LEVEL[other]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({room}) imports {target} ({other})")
    assert not bad, "imports against the room order:\n" + "\n".join(bad)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for _, p, _ in CHECKED if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


def _kind(cls: type) -> str | None:
    from monai.transforms import Transform
    from torch import nn

    if issubclass(cls, Transform):
        return "transform"
    if issubclass(cls, nn.Module):
        return "module"
    attach = getattr(cls, "attach", None)
    if callable(attach) and list(inspect.signature(attach).parameters) == ["self", "engine"]:
        return "handler"
    return None


# where each kind of class may be defined; DRR is the thin nn.Module over the pure renderer (drr/module.py)
HOMES = {"transform": {"transforms"}, "handler": {"handlers"}, "module": {"networks", "losses", "drr"}}


@pytest.mark.parametrize("kind", sorted(HOMES))
def test_classes_live_in_their_room(kind):
    misplaced = []
    for module, path, tree in CHECKED:
        if not any(isinstance(n, ast.ClassDef) for n in tree.body) or _room(module) in HOMES[kind]:
            continue
        mod = importlib.import_module(module)
        for node in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            cls = getattr(mod, node.name, None)
            if inspect.isclass(cls) and _kind(cls) == kind:
                misplaced.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert not misplaced, f"{kind} classes outside {sorted(HOMES[kind])}:\n" + "\n".join(misplaced)
