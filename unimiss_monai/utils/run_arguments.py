"""Checks of a bundle run's command line before any work: ids that name nothing, values of the wrong type.

``python -m monai.bundle run --config_file ... --key value`` merges every ``--key value`` pair into the config, so a
typo (``--num_epoch 1`` for ``--max_epochs 1``) adds an id nothing reads and the run goes on with the default, and
``--max_epochs abc`` fails deep in the trainer. Each bundle calls :func:`check_run_arguments` first in its
``initialize`` list; it compares the ids given on the command line with those the config files define.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.devices import device_problem
from unimiss_monai.utils.errors import install_error_hook
from unimiss_monai.utils.expression_kinds import expression_yields
from unimiss_monai.utils.paths import file_in_the_way, symlink_loop_problem
from unimiss_monai.utils.suggestions import did_you_mean
from unimiss_monai.utils.value_ranges import XRAY_SPACING_MM, range_problem

__all__ = ["RunArgumentError", "check_overrides", "check_run_arguments", "config_ids", "did_you_mean", "is_flag"]

# the keys every config component may hold besides its target's arguments
_COMPONENT_KEYS = {"_target_", "_disabled_", "_requires_", "_desc_", "_mode_"}
_COMMANDS = ("run", "run_workflow")


class RunArgumentError(ValueError):
    """A ``--key value`` pair of ``python -m monai.bundle run`` that names no config id or has the wrong type."""


def is_flag(arg: str) -> bool:
    """Whether fire reads command-line word ``arg`` as a flag: a leading hyphen, except a negative number."""
    return arg.startswith("--") or re.match(r"^-[a-zA-Z]", arg) is not None


def _parse_flags(args: Sequence[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` / ``--key`` pairs of ``args`` as fire hands them to ``run(**override)``."""
    from fire.parser import DefaultParseValue

    if "--" in args:  # what follows the last "--" is for fire itself
        args = args[: len(args) - 1 - args[::-1].index("--")]
    pairs: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not is_flag(arg):
            continue  # a positional run_id
        key, has_value, value = arg.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if not has_value:
            if index == len(args) or is_flag(args[index]):
                key, value = (key[2:], "False") if key.startswith("no") and key not in _run_arguments() else (key, "True")
            else:
                value, index = args[index], index + 1
        pairs[key] = DefaultParseValue(value)
    return pairs


def _run_arguments() -> set[str]:
    """Arguments of ``monai.bundle run`` / ``run_workflow`` that are not config ids (``meta_file``, ``tracking``, ...)."""
    from monai.bundle import ConfigWorkflow, scripts

    names: set[str] = set()
    for func in (scripts.run, scripts.run_workflow, scripts.create_workflow, ConfigWorkflow.__init__):
        names |= {p.name for p in inspect.signature(func).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
    return names


def config_ids(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every id of ``config`` (nested ones as ``a#b``, list items as ``a#0``) mapped to its value."""
    ids: dict[str, Any] = {}
    items = config.items() if isinstance(config, Mapping) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        name = f"{prefix}{key}"
        ids[name] = value
        ids.update(config_ids(value, name + "#"))
    return ids


def _command_line() -> list[str] | None:
    """The arguments after ``run`` when this process is ``python -m monai.bundle run ...``, else ``None``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    launched = getattr(spec, "name", None) == "monai.bundle.__main__" or Path(sys.argv[0]).parts[-2:] == ("bundle", "__main__.py")
    if not launched or len(sys.argv) < 2 or sys.argv[1] not in _COMMANDS:
        return None
    return list(sys.argv[2:])


def _target_parameters(target: Any) -> set[str] | None:
    """Keyword names ``target`` (a ``_target_`` string) accepts; ``None`` when unknown or unlimited."""
    from pydoc import locate

    from monai.bundle.config_item import ComponentLocator

    if not isinstance(target, str) or target.startswith(("$", "@", "%")):
        return None
    try:
        if "." in target:
            obj = locate(target)
        else:  # a short MONAI name such as "LoadImaged"
            module = ComponentLocator().get_component_module_name(target)
            obj = getattr(sys.modules[module], target) if isinstance(module, str) else None
        params = inspect.signature(obj).parameters.values()
    except Exception:  # not importable or no signature: MONAI reports it when it instantiates the component
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _unknown(key: str, ids: Mapping[str, Any], run_args: set[str], bundle: str, files: str,
             command: str | None = None) -> str | None:
    """The complaint about override ``key``, or ``None`` when it names a config id; ``command``: the command whose
    options ``run_args`` are, for a complaint about an option of it."""
    if key in ids or key.startswith("_meta_"):
        return None
    parent, _, leaf = key.rpartition("#")
    if parent and isinstance(ids.get(parent), Mapping) and "_target_" in ids[parent]:
        # a new keyword of a component (--network_def#drop_path_rate 0.1) is fine when its target accepts it
        params = _target_parameters(ids[parent]["_target_"])
        if params is None or leaf in params or leaf in _COMPONENT_KEYS:
            return None
        close = difflib.get_close_matches(leaf, sorted(params), n=1)
        hint = f"; did you mean {parent + '#' + close[0]!r}?" if close else f" (it takes: {', '.join(sorted(params))})"
        return f"unknown config id {key!r} for {bundle}: {ids[parent]['_target_']} takes no argument {leaf!r}{hint}"
    hint = did_you_mean(key, sorted(set(ids) | run_args), flags=command is not None, values=ids)
    if command:
        return f"unknown option --{key}: neither an option of {command} nor a config id of {bundle}" + (hint or f" ({files})")
    return f"unknown config id {key!r} for {bundle}" + (hint or f"; it is neither defined in {files} nor a run argument")


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("$", "@", "%"))


def _is_number(value: Any, integer: bool) -> bool:
    return isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)


# ids that count something at least once (a run of 0 epochs trains nothing, and ignite says so only after the data
# loaded), and flags whose default is an expression (e.g. mixed precision following the device), by their last part
_AT_LEAST_ONE = {"max_epochs", "epochs", "batch_size", "val_interval", "sw_batch_size"}
# ids whose number is a probability or a fraction: outside (0, 1) a threshold makes every prediction the same class,
# and an overlap of 1 never advances the window
_OPEN_UNIT = {"threshold", "sw_overlap"}
_FLAGS = {"amp"}
# ids whose number may also be a [row, column] pair (the DRR detector's pixels), as the bundle docs offer
_NUMBER_OR_PAIR = {"pixel_spacing"}
# ids that give an image or crop size in pixels / voxels (a number, or one per axis): a size below 1 fails deep in the
# transforms (a division by zero, "Dimension size must be non-negative") or builds a network for empty images
_SIZES = {"spatial_size", "roi_size", "ct_roi", "detector_shape", "slab_detector_shape", "image_size_2d"}
# ids with one value per axis: those sizes, and the CT classifier's field of view (mm), whose cases all failed alike
_PER_AXIS = _SIZES | {"field_of_view_mm"}
# ids that name a file or folder, by how their last part ends: a loop of symbolic links there would fail at the
# first read or write, with a traceback that names no option
_PATH_SUFFIXES = ("_dir", "_path", "_root")


def _numbers(value: Any) -> list[Any]:
    """The numbers of ``value``: itself, or the items of a list; expressions left out."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if _is_number(v, False)]


def _expected_kind(key: str, value: Any, default: Any) -> str | None:
    """The kind of value ``key`` (default ``default``) expects, in words, when ``value`` is not of it; else ``None``."""
    name = key.rsplit("#", 1)[-1]
    if isinstance(default, bool):
        try:
            as_bool(value, key)
        except ValueError:
            return "true or false"
    elif isinstance(default, (int, float)):
        integer = isinstance(default, int)
        pair = name in _NUMBER_OR_PAIR and isinstance(value, (list, tuple)) and len(value) == 2
        if pair and not all(_is_number(v, integer) for v in value):
            return f"{'an integer' if integer else 'a number'} or a [row, column] pair of them"
        if not pair and not _is_number(value, integer):
            return "an integer" if integer else "a number"
    elif isinstance(default, list) and default and all(_is_number(d, False) for d in default):
        # only lists of numbers: MONAI takes a single string for a list of keys, and an empty list says nothing
        integer = all(isinstance(d, int) for d in default)
        if not isinstance(value, (list, tuple)) or not all(_is_number(v, integer) or _is_expression(v) for v in value):
            return f"a list of {'integers' if integer else 'numbers'} such as {default}"
    return None


def _out_of_range(key: str, value: Any, default: Any) -> str | None:
    """The complaint about ``value``, of the kind ``key`` expects, when it lies outside the values that id can take."""
    name = key.rsplit("#", 1)[-1]
    numbers = _numbers(value)
    if not all(math.isfinite(v) for v in numbers):  # 1e309 reads as inf, and passes every comparison below
        return f"config id {key!r} expects a finite number, got {value!r}"
    axes = isinstance(default, list) and isinstance(value, (list, tuple)) and len(value) != len(default)
    if name in _PER_AXIS and axes:
        return f"config id {key!r} expects {len(default)} values, one per axis, such as {default}, got {value!r}"
    if name in _SIZES and any(v < 1 for v in numbers):
        return f"config id {key!r} expects sizes of at least 1 (whole pixels or voxels), got {value!r}"
    # a DRR's detector pixels: 1e-4 (a spacing meant in metres) rendered a near-constant image of a few micrometres of
    # the CT, which the X-ray bundles then took as a radiograph; their own range keeps every full-view DRR rendered
    # here one they read (a slab DRR's pixels are its slab's width over slab_detector_shape)
    low, high = XRAY_SPACING_MM
    if name in _NUMBER_OR_PAIR and not all(low <= v <= high for v in numbers):
        return (f"config id {key!r} expects detector pixels of {low:g}-{high:g} mm (a number or a [row, column] pair), "
                f"got {value!r}: give the spacing in mm")
    if not _is_number(value, False):
        return None
    if name in _AT_LEAST_ONE and isinstance(default, int) and int(value) < 1:
        return f"config id {key!r} expects a whole number of at least 1, got {value!r}"
    if name in _OPEN_UNIT and isinstance(default, float) and not 0 < float(value) < 1:
        if not (name == "sw_overlap" and float(value) == 0):  # windows that only touch are a valid choice
            return f"config id {key!r} expects a number between 0 and 1, got {value!r}"
    wording = range_problem(name, value)  # learning rates and decays: ranges shared with their other readers
    if wording is not None:
        return f"config id {key!r} expects {wording}, got {value!r}"
    return None


def _wrong_value(key: str, value: Any) -> str | None:
    """The complaint about a device or path ``value`` of ``key``, told by the id's name, whatever its default."""
    name = key.rsplit("#", 1)[-1]
    if name == "device":
        problem = device_problem(value, f"--{key}")
        return None if problem is None else f"config id {key!r}: {problem}"
    if name.endswith(_PATH_SUFFIXES) and isinstance(value, str):
        return symlink_loop_problem(value, f"--{key}") or _output_folder_problem(key, name, value)
    return None


def _output_folder_problem(key: str, name: str, value: str) -> str | None:
    """The complaint about an output folder ``value`` that is a file, or lies inside one: the first write there failed
    with a traceback (``NotADirectoryError`` while a handler was made) that named no option."""
    if not name.endswith(("output_dir", "cache_dir", "ckpt_dir", "bundle_root")):
        return None  # an input folder may be a file (a datalist), which its reader says
    if value.startswith("~"):
        # the shell expands ~ only unquoted and not after "=": what arrives here is the text, which MONAI's handlers
        # and the writers take as a folder named "~" in the working folder (the readers of inputs expand it)
        return (f"--{key} {value!r} starts with '~', which reached the run unexpanded (quoted, or after '='), and "
                f"would make a folder named '~' in {os.getcwd()}; write it without quotes, or with $HOME instead of ~")
    if name == "bundle_root":
        return None  # the bundle's own folder, read as much as written
    path = Path(value).expanduser().absolute()
    blocker = file_in_the_way(path)
    if blocker is None:
        return None
    what = "is a file" if blocker == path else f"lies inside the file {blocker}"
    return f"--{key} {value!r} {what}, not a folder; move that file away or choose another --{key}"


def _wrong_type(key: str, value: Any, default: Any) -> str | None:
    """The complaint about ``value`` for an id whose default is ``default``, or ``None`` when it fits."""
    if _is_expression(value):
        return None
    if key.rsplit("#", 1)[-1] in _FLAGS and not isinstance(default, bool):
        default = False  # checked as the flag it is
    path = key.rsplit("#", 1)[-1].endswith(_PATH_SUFFIXES)
    if isinstance(value, bool) and (path or isinstance(default, str) and not _is_expression(default)):
        # a bare --dataset_dir reaches the run as True, and failed later in a traceback about a bool
        left_out = f"; was its value left out? (--{key} VALUE)" if value else ""
        return f"config id {key!r} expects {'a path' if path else 'text'}, got {value!r}{left_out}"
    expects = _expected_kind(key, value, default)
    if expects is not None:
        return f"config id {key!r} expects {expects}, got {value!r}"
    numeric = not isinstance(default, bool) and (isinstance(default, (int, float)) or bool(_numbers(default)))
    problem = _out_of_range(key, value, default) if numeric else None
    return problem or _wrong_value(key, value)


def check_run_arguments(bundle: str, argv: Sequence[str] | None = None) -> None:
    """Refuse ``--key value`` overrides of a bundle run that name no config id or give a value of the wrong type.

    Called as the first entry of a bundle's ``initialize`` list. When the process is ``python -m monai.bundle run``
    (or ``run_workflow``), it also installs :func:`~unimiss_monai.utils.errors.install_error_hook`, so errors a user
    can fix print as one line. Elsewhere (``ConfigWorkflow`` in a script, MONAI Label) it does nothing.

    Valid keys are the ids the ``--config_file`` files define (nested ``a#b``, list items ``a#0``, merged in order, plus
    ``--args_file`` entries and the ``--tracking`` settings' ids), keywords a component's ``_target_`` accepts, and
    the arguments of ``run`` itself (``meta_file``, ``logging_file``, ``workflow_type``, ...). An id whose default is
    an integer, a number, a boolean or a list (or an expression that yields one: ``$@max_epochs if @probe else 0``)
    must get a value of that kind (or a ``$``/``@``/``%`` expression), a finite one, within the id's range where it
    has one (sizes of at least 1, ``layer_decay`` in (0, 1], ...); a ``device`` must be one this PyTorch can run on,
    and a ``..._dir`` / ``..._path`` no loop of symbolic links. A path id, or an id whose default is plain text,
    refuses a boolean: a bare ``--dataset_dir`` (its value left out). An overlay listed before the bundle's config
    (:func:`~unimiss_monai.utils.config_order.config_order_problem`) is refused first, with the list to use.

    Args:
        bundle: the bundle's name, used in the messages.
        argv: the arguments after ``run``; default: this process's command line when it is ``monai.bundle run``.

    Raises:
        RunArgumentError: one line listing every refused key, with the nearest valid ids.
    """
    from monai.bundle import ConfigParser
    from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

    from unimiss_monai.utils.config_order import config_order_problem

    if argv is None:
        argv = _command_line()
        if argv is None:
            return
        install_error_hook()
    run_args = _run_arguments()
    given = _parse_flags(list(argv))
    if "help" in given or "h" in given:  # else refused as an unknown config id 'help', which reads as a fault
        print(f"monai.bundle run lists no options of its own; the ids of {bundle}, with their defaults, are in the "
              "Configuration table of its docs/README.md, and --<id> <value> sets any of them (a nested one as "
              "--<a>#<b> <value>)", flush=True)
        raise SystemExit(0)  # help asked for and given: no failed work
    arguments = dict(ConfigParser.load_config_file(given["args_file"])) if given.get("args_file") else {}
    arguments.update(given)
    files = arguments.get("config_file")
    if not files:
        return  # monai.bundle refuses a run without config files itself
    if order := config_order_problem(files):  # before the ids: an overlay's own ids are a wrong order's symptom
        raise RunArgumentError(order)
    ids = config_ids(ConfigParser.load_config_files(files))
    tracking = arguments.get("tracking")
    if tracking:
        settings = DEFAULT_EXP_MGMT_SETTINGS.get(tracking) if isinstance(tracking, str) else None
        settings = settings or ConfigParser.load_config_files(tracking)
        ids.update({k: v for k, v in config_ids(settings.get("configs", {})).items() if k not in ids})
    problems = _problems({k: v for k, v in arguments.items() if k not in run_args}, ids, run_args, bundle, _names(files))
    if problems:
        raise RunArgumentError("; ".join(problems))


def _names(files: Any) -> str:
    """The file names of a ``config_file`` argument (a path or a list of them), for messages."""
    names = ", ".join(Path(f).name for f in ([files] if isinstance(files, str) else files) if isinstance(f, (str, Path)))
    return names or "the config files"


def _problems(overrides: Mapping[str, Any], ids: Mapping[str, Any], known: set[str], bundle: str, files: str,
              command: str | None = None) -> list[str]:
    """The complaints about ``overrides`` (id -> value): ids that name nothing in ``ids`` (the nearest of ``ids`` and
    ``known`` suggested), and values of the wrong type."""
    problems = []
    for raw_key, value in overrides.items():
        key = raw_key.lstrip("+").replace("::", "#")
        problem = _unknown(key, ids, known, bundle, files, command)
        if problem is None and key in ids:
            default = expression_yields(ids[key], ids) if _is_expression(ids[key]) else ids[key]
            problem = _wrong_type(key, value, default)
        if problem:
            problems.append(problem)
    return problems


def check_overrides(command: str, bundle: str, overrides: Mapping[str, Any], config_files: Sequence[Sequence[str]],
                    options: Iterable[str] = ()) -> None:
    """Refuse the config overrides a command hands to ``ConfigWorkflow`` runs of ``bundle`` as
    :func:`check_run_arguments` refuses those of ``python -m monai.bundle run``: an id that no run's config files
    define (MONAI would add it and the run would go on with the default), or a value of the wrong type.

    Args:
        command: the command's name, used in the messages (``label-efficiency``).
        bundle: the bundle's name, used in the messages.
        overrides: the ids given on the command line and their values.
        config_files: the config files of each kind of run the overrides go to (train, evaluate, ...); an id that
            one of them defines is valid.
        options: the command's own options, suggested for a misspelled one (``--fraction``: ``--fractions``).

    Raises:
        RunArgumentError: one line listing every refused id, with the nearest valid options and ids.
    """
    from monai.bundle import ConfigParser

    ids: dict[str, Any] = {}
    for files in config_files:
        ids.update({k: v for k, v in config_ids(ConfigParser.load_config_files(list(files))).items() if k not in ids})
    names = _names([f for files in config_files for f in files])
    problems = _problems(overrides, ids, set(options), bundle, ", ".join(dict.fromkeys(names.split(", "))), command)
    if problems:
        raise RunArgumentError(f"{command}: " + "; ".join(problems))
