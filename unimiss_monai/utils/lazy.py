"""Module-level ``__getattr__`` factories (PEP 562): lazy exports of a package, and deprecated names of a module whose
contents moved. Importing a package then costs nothing until a name is used, and an old import path keeps working
for one release with a ``DeprecationWarning`` naming the new one."""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports", "moved_names"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that import ``exports[name]`` (a module path) on first access of
    ``name`` and return its attribute ``name``; a name that is itself a submodule of ``package`` maps to that module.

    Args:
        package: the package's ``__name__``.
        exports: public name -> module defining it (``"unimiss_monai.data.loaders"``), or ``""`` for the submodule
            ``package.<name>``.

    Examples::

        __getattr__, __dir__ = lazy_exports(__name__, {"drr": "", "ResumableSampler": "unimiss_monai.data.loaders"})
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            # any submodule resolves too (``unimiss_monai.engines.intra_inter`` in a config expression), without a list
            # to keep in step with the files
            if name.startswith("_") or importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return importlib.import_module(f"{package}.{name}")
        where = exports[name]
        value = importlib.import_module(f"{package}.{name}") if not where else getattr(importlib.import_module(where), name)
        # later lookups find the attribute directly and skip this function
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__


def moved_names(old: str, new: Mapping[str, str]) -> Callable[[str], Any]:
    """``__getattr__`` for the module ``old`` whose names moved: ``name`` comes from module ``new[name]`` with a
    ``DeprecationWarning("<old>.<name> moved to <new>.<name>")``; unknown names raise ``AttributeError``.

    Args:
        old: the old module's ``__name__``.
        new: name -> module that now defines it.

    Examples::

        __getattr__ = moved_names(__name__, {"StudentTeacher": "unimiss_monai.networks.nets.student_teacher"})
    """

    def __getattr__(name: str) -> Any:
        if name not in new:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} moved to {new[name]}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new[name]), name)

    return __getattr__
