"""The package's modules, parsed once, and the modules each imports: what the architecture and dependency tests read."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unimiss_monai"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


# (dotted module name, path, syntax tree) of every module of the package, __init__ and __main__ files included
SOURCES = [(m, p, ast.parse(p.read_text(), filename=str(p))) for m, p in _modules()]


def imports(module: str, path: Path, tree: ast.Module) -> list[tuple[ast.stmt, str]]:
    """``(import statement, absolute name of what it imports)`` for every import, at module level or inside functions:
    relative imports resolved against ``module``, ``from unimiss_monai import x`` as ``unimiss_monai.x``."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[ast.stmt, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found += [(node, f"{base}.{a.name}" if base == "unimiss_monai" else base) for a in node.names]
    return found
