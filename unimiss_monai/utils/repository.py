"""The bundles of the repository clone this package runs from. An installed wheel has none beside it (bundles come
from a clone, or from ``download``), so a command that defaults to one says so and names its option."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPOSITORY_BUNDLES", "no_bundles_here", "repository_bundle"]

#: ``bundles/`` of the clone this package runs from; absent where the package is installed from a wheel
REPOSITORY_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def no_bundles_here(command: str, option: str) -> str:
    """One line: ``command`` has no bundle to default to, and ``option`` is the fix."""
    return (f"{command}: this unimiss_monai has no bundles/ beside it (installed from a wheel, not run from a clone of "
            f"the repository); pass {option}, with a bundle folder of a clone or of `python -m unimiss_monai download`")


def repository_bundle(name: str, command: str, option: str) -> Path:
    """``bundles/<name>`` of the clone this package runs from.

    Raises:
        ValueError: :func:`no_bundles_here`'s line, where there is no such bundle folder.
    """
    path = REPOSITORY_BUNDLES / name
    if not (path / "configs").is_dir():
        raise ValueError(no_bundles_here(command, option))
    return path
