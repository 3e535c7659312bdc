"""The order of a bundle run's ``--config_file`` list: the bundle's config first, each overlay after it.

``python -m monai.bundle run`` merges the files in the order given, each over the ones before. An overlay
(``smoke.yaml``, ``demo.yaml``, ``evaluate.json``, ``multi_gpu_train.json``) listed before the config it changes is
overridden by it: ``"['configs/demo.yaml','configs/inference.json']"`` ran the full-size settings with no word.
:func:`~unimiss_monai.utils.run_arguments.check_run_arguments`, first in every ``initialize`` list, refuses such a
list with :func:`config_order_problem`.

An overlay that changes part of a section it does not define (``evaluate.json``'s ``validate#dataset``,
``smoke.yaml``'s ``network_def#preset``), listed first or alone, stops MONAI's own merge of the files with a
``KeyError: 'query key: validate'`` traceback. That merge comes before any code of a bundle runs (MONAI 1.6 lets
``logging.conf``, the one file read before it, name only the ``logging`` module's handlers), so from the command
line those lists still end in MONAI's traceback; :func:`config_order_problem` words them all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["config_order_problem"]

_CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
# the id MONAI runs; a config that defines it and merges alone is one a bundle runs by itself (train.json,
# inference.json); every other config file is an overlay on one of them
_RUN_ID = "run"


def config_order_problem(files: Any) -> str | None:
    """The complaint about the config list ``files`` (a path, a list of them, or paths joined by commas, as
    ``--config_file`` gives them) when an overlay comes before the bundle config it changes, or without it, with
    the list in a working order; ``None`` when the order is right (or a file cannot be read: MONAI says so)."""
    if isinstance(files, (str, Path)):
        files = str(files).split(",") if "," in str(files) and not Path(files).is_file() else [files]
    given = [str(f) for f in files or []]
    contents = {name: _content(name) for name in given}
    if not given or any(content is None for content in contents.values()):
        return None
    bases = [name for name in given if _is_base(contents[name])]
    overlays = [name for name in given if name not in bases]
    if not overlays:
        return None
    if bases:
        # the first config that runs alone is the one the others change: a later file that also defines the run (an
        # overlay of the user's replacing its steps) is merged over it, as an overlay is
        base = min(bases, key=given.index)
        early = next((name for name in overlays if given.index(name) < given.index(base)
                      and _overridden(contents[name], contents[base])), None)
        if early is None:
            return None
        return (f"--config_file lists the overlay {early} before {base}, the config it changes, which would "
                f"override what it sets; each overlay goes after it: --config_file "
                f"\"{_listed([base, *(name for name in given if name != base)])}\"")
    base = _base_beside(overlays[0], contents[overlays[0]])
    if base is None:
        return None  # no config beside it to name: MONAI's own error says what it can
    return (f"--config_file lists the overlay {overlays[0]} without {base}, the config it changes; each overlay goes "
            f"after it: --config_file \"{_listed([base, *given])}\"")


def _overridden(overlay: dict, base: dict) -> bool:
    """Whether ``base``, merged over ``overlay``, sets an id that ``overlay`` sets (then the overlay's value is lost);
    ids the base does not hold are merged in whatever the order."""
    for key in overlay:
        node: Any = base
        for part in key.lstrip("+").replace("::", "#").split("#"):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                break
        else:
            return True
    return False


def _listed(names: Sequence[str]) -> str:
    return "[" + ",".join(repr(name) for name in names) + "]"


def _content(name: str) -> dict | None:
    """The top-level ids of config file ``name``; ``None`` when it cannot be read as a config."""
    from monai.bundle import ConfigParser

    try:
        content = ConfigParser.load_config_file(name)
    except Exception:  # noqa: BLE001 - a missing or broken file: MONAI's own reading of it says what is wrong
        return None
    return content if isinstance(content, dict) else None


def _is_base(content: dict) -> bool:
    """Whether a config is one a bundle runs by itself: it defines the run, and changes no part of a section it does
    not define (MONAI could not merge it alone)."""
    keys = [key.lstrip("+").replace("::", "#") for key in content]
    return _RUN_ID in keys and all("#" not in key or key.split("#")[0] in keys for key in keys)


def _base_beside(overlay: str, content: dict) -> str | None:
    """The bundle config beside ``overlay`` (same folder) that defines every section it changes part of and most of
    the ids it sets (``train.json`` on a tie: the base of the overlays the docs show), written as ``overlay`` is;
    ``None`` if none."""
    keys = [key.lstrip("+").replace("::", "#") for key in content]
    changed, partly = {key.split("#")[0] for key in keys}, {key.split("#")[0] for key in keys if "#" in key}
    folder, found = Path(overlay).parent, []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.suffix in _CONFIG_SUFFIXES and path.name != "metadata.json":
            other = _content(str(path))
            if other is not None and _is_base(other) and partly <= set(other) and changed & set(other):
                found.append((-len(changed & set(other)), path.name != "train.json", path.name))
    return str(folder / min(found)[2]) if found else None
