"""The kind of value a config expression yields (an integer, a number, a boolean), for the type check of an option
whose default is an expression: ``--freeze_encoder_epochs abc`` against ``"$@max_epochs if @linear_probe_flag else 0"``
failed in the trainer with "invalid literal for int()", naming no option. Only a kind that is sure is told: an option
whose default may yield anything is not type-checked rather than refused for a value it would take.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["expression_yields"]

_PLAIN = (int, float, bool)


def expression_yields(expression: str, ids: Mapping[str, Any] | None = None) -> Any:
    """A plain value of the kind ``expression`` yields: ``False`` for a comparison; for a literal, or a choice
    between values (``$@max_epochs if @linear_probe_flag else 0``: an integer where ``max_epochs`` in ``ids``, the
    config's ids, is one), the kind of every branch; else ``expression`` itself. A branch whose kind is not sure
    (``$@lr if @x else 0`` with ``lr`` unknown or an expression) leaves it unchecked: ``0`` would refuse ``0.5``."""
    try:  # each @reference reads as a subscript of one name, so that the expression is Python
        tree = ast.parse(re.sub(r"@([\w#]+)", r"_ref['\1']", expression.lstrip("$")), mode="eval").body
    except SyntaxError:
        return expression
    if isinstance(tree, ast.Compare):
        return False
    # a bare reference or call is not told here: only a literal, or a choice between values
    branches = [tree.body, tree.orelse] if isinstance(tree, ast.IfExp) else [tree] * isinstance(tree, ast.Constant)
    kinds = {_kind(b, ids or {}) for b in branches}
    if not kinds or None in kinds or bool in kinds and len(kinds) > 1:
        return expression
    return False if kinds == {bool} else 0.0 if float in kinds else 0


def _kind(node: ast.AST, ids: Mapping[str, Any]) -> type | None:
    """``int``, ``float`` or ``bool`` where ``node`` surely yields one: a literal, a reference to an id whose value
    in ``ids`` is one, ``int(...)``/``len(...)``, or ``min``/``max``/``+ - * //`` of numbers; else None."""
    if isinstance(node, ast.Constant):
        return type(node.value) if type(node.value) in _PLAIN else None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "_ref":
        value = ids.get(node.slice.value) if isinstance(node.slice, ast.Constant) else None
        return type(value) if type(value) in _PLAIN else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id in ("int", "len"):
            return int
        parts = node.args if node.func.id in ("min", "max") else []
    elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
        parts = [node.left, node.right]
    else:
        return None
    kinds = {_kind(part, ids) for part in parts}
    if not kinds or None in kinds or bool in kinds:  # True + 1 is an integer, but no config means that
        return None
    return float if float in kinds else int
