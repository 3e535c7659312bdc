"""Reading a JSON file that must hold an object (a config, a bundle's metadata): what is wrong with it, in words."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["json_kind", "read_json_object"]


def json_kind(value: Any) -> str:
    """What a parsed JSON ``value`` is, in JSON's words: ``"array"``, ``"string"``, ``"number"``, ``"null"``, ..."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
             type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def read_json_object(path: str | os.PathLike, shown: str | None = None, fix: str = "fix it") -> dict[str, Any]:
    """The JSON object in ``path``; a one-line ``ValueError`` naming the file (as ``shown``, default the path) and
    ``fix`` where it is missing, unreadable, not JSON or not an object (where readers would fail with a bare
    ``JSONDecodeError`` or ``'list' object has no attribute 'get'``)."""
    name = shown or str(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{name}: missing; {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{name}: not valid JSON ({err}); {fix}") from None
    except OSError as err:
        raise ValueError(f"{name}: cannot be read ({err.strerror or err}); make it a readable file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{name}: holds a JSON {json_kind(data)}, not an object; {fix}")
    return data
