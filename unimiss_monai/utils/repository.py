"""The bundles of the repository clone this package runs from. An installed wheel has none beside it (bundles come
from a clone, or from ``download``), so a command that defaults to one says so and names its option."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPOSITORY_BUNDLES", "no_bundles_here", "repository_bundle", "repository_bundles"]

#: ``bundles/`` of the clone this package runs from; absent where the package is installed from a wheel
REPOSITORY_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def no_bundles_here(command: str, option: str) -> str:
    """One line: ``command`` has no bundle to default to, and ``option`` is the fix."""
    return (f"{command}: this unimiss_monai has no bundles/ beside it (installed from a wheel, not run from a clone of "
            f"the repository); pass {option}, with a bundle folder of a clone or of `python -m unimiss_monai download`")


def _missing(command: str, option: str, what: str) -> ValueError:
    if REPOSITORY_BUNDLES.is_dir():  # a clone, without that bundle
        return ValueError(f"{command}: no {what} in {REPOSITORY_BUNDLES}; pass {option}")
    return ValueError(no_bundles_here(command, option))


def repository_bundle(name: str, command: str, option: str) -> Path:
    """``bundles/<name>`` of the clone this package runs from.

    Raises:
        ValueError: one line naming ``option``: there is no ``bundles/`` (:func:`no_bundles_here`), or no such bundle
            folder in it.
    """
    path = REPOSITORY_BUNDLES / name
    if not (path / "configs").is_dir():
        raise _missing(command, option, f"bundle folder {name}")
    return path


def repository_bundles(command: str, option: str) -> list[Path]:
    """Every bundle folder (one holding ``configs/``) of the clone's ``bundles/``, sorted; raises as
    :func:`repository_bundle` where there is none."""
    listed = REPOSITORY_BUNDLES.iterdir() if REPOSITORY_BUNDLES.is_dir() else ()
    found = sorted(p for p in listed if (p / "configs").is_dir())
    if not found:
        raise _missing(command, option, "bundle folders")
    return found
