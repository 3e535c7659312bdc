"""Command line: ``python -m unimiss_monai <command> [--flag value ...]`` (``fire``). Each command lives in the module
that owns the capability; this file maps names to callables and imports them lazily (``--help`` stays fast)."""

from __future__ import annotations

import difflib
import errno
import functools
import importlib
import inspect
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from unimiss_monai.utils.run_arguments import is_flag

# command name -> "module:function", in the order of a first day: data, results, weights, studies, releases, speed
COMMANDS: dict[str, str] = {
    "samples": "unimiss_monai.data.samples:samples",
    "report": "unimiss_monai.report:report",
    "publish-pretrained": "unimiss_monai.networks.publish:publish_pretrained",
    "convert-checkpoint": "unimiss_monai.networks.convert:convert_checkpoint",
    "official-datalist": "unimiss_monai.data.official_layout:official_datalist",
    "label-efficiency": "unimiss_monai.benchmarks.label_efficiency:label_efficiency",
    "download": "unimiss_monai.release.download:download",
    "package-bundle": "unimiss_monai.release.package:package_bundle",
    "release-official": "unimiss_monai.release.official:release_official",
    "verify-bundles": "unimiss_monai.release.verify:verify_bundles",
    "bench-drr": "unimiss_monai.benchmarks.drr:bench_drr",
    "bench-drr-cases": "unimiss_monai.benchmarks.drr_cases:bench_drr_cases",
    "bench-backbone": "unimiss_monai.benchmarks.backbone:bench_backbone",
    "bench-pretrain": "unimiss_monai.benchmarks.pretrain:bench_pretrain",
    "bench-infer": "unimiss_monai.benchmarks.inference:bench_infer",
}

# what ``python -m unimiss_monai --help`` says of each command, without importing it (help stays fast)
SUMMARIES: dict[str, str] = {
    "samples": "write the demo data sets every bundle runs on (the real chest CT and radiograph where installed)",
    "report": "one HTML/Markdown page of a run folder's results, with its pictures",
    "publish-pretrained": "check a pretraining export and put it where the fine-tuning bundles read it",
    "convert-checkpoint": "convert an official UniMiSS / UniMiSS+ checkpoint to this package's weights",
    "official-datalist": "a pretraining datalist for a data root in the official code's layout",
    "label-efficiency": "scratch vs pretrained fine-tuning at several label fractions and seeds, with intervals",
    "download": "fetch a released bundle by name and version, verify it and unpack it",
    "package-bundle": "write a bundle's model-zoo style release (zip, checksum, index entry)",
    "release-official": "convert an official checkpoint and release it as the pretraining bundle",
    "verify-bundles": "the model-zoo checks of each bundle, offline (metadata schema, network in/out, export)",
    "bench-drr": "DRR speed and accuracy, side by side with DiffDRR, nanodrr and plastimatch where installed",
    "bench-drr-cases": "time per CT of the DRR bundle over an archive",
    "bench-backbone": "training-step throughput and memory, ours vs the official formulation",
    "bench-pretrain": "speed and peak memory of the UniMiSS+ pretraining step",
    "bench-infer": "whole-CT segmentation time, ours vs SwinUNETR",
}


def _lazy(name: str) -> Callable:
    module_name, func_name = COMMANDS[name].split(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module_name), func_name)(*args, **kwargs)

    call.__name__ = func_name
    call.__doc__ = f"{SUMMARIES[name]} (options: python -m unimiss_monai {name} --help)"
    return call


def _load(name: str) -> Callable:
    module_name, func_name = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


# fire's own flags, which it also accepts before the "--" separator
_FIRE_FLAGS = {"help", "h", "verbose"}


def short_flags(func: Callable) -> dict[str, str]:
    """The one-letter flags fire's ``--help`` lists for ``func``: ``{"b": "base_url"}``.

    fire's help gives a parameter with a default ``-x`` when no other parameter with a default starts with ``x``
    (keyword-only ones among themselves), even when a positional parameter does, which fire's own parser then calls
    ambiguous (``package-bundle BUNDLE -b URL``); :func:`main` reads such a flag as the help says.
    """
    params = inspect.signature(func).parameters.values()
    groups = ([p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD and p.default is not p.empty],
              [p.name for p in params if p.kind == p.KEYWORD_ONLY])
    listed: dict[str, list[str]] = {}
    for names in groups:
        for name in names:
            if sum(n[0] == name[0] for n in names) == 1:
                listed.setdefault(name[0], []).append(name)
    return {letter: names[0] for letter, names in listed.items() if len(names) == 1}


def expand_short_flags(func: Callable, args: Sequence[str]) -> list[str]:
    """``args`` with each one-letter flag that fire's help lists (:func:`short_flags`) written out in full
    (``-b URL`` -> ``--base_url URL``), up to the last ``--``; ``-h`` stays the help flag."""
    listed = short_flags(func)
    args = list(args)
    end = len(args) - 1 - args[::-1].index("--") if "--" in args else len(args)
    for i, arg in enumerate(args[:end]):
        m = re.fullmatch(r"-([a-zA-Z])(=.*)?", arg, re.DOTALL)
        if m and m.group(1) != "h" and m.group(1) in listed:
            args[i] = f"--{listed[m.group(1)]}{m.group(2) or ''}"
    return args


def read_options(command: str, func: Callable, args: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """``args`` read the way fire reads them, against ``func``'s signature, before anything runs.

    fire calls the command with the arguments it recognises and only then complains about the rest, after the work
    is done. This reads ``--name value``, ``--name=value``, ``--name`` / ``--noname`` for booleans, ``-n`` for the one
    parameter starting with ``n``, hyphens as underscores, bare values for the positional parameters not given by
    name; what follows the last ``--`` is fire's.

    Args:
        command: the command's name, used in the message.
        func: the command's function.
        args: the arguments after the command's name.

    Returns:
        The complaint about the first argument ``func`` cannot take (``None`` when all fit), and the text typed for
        each parameter given a value (``{"version": "0.10"}``).
    """
    params = inspect.signature(func).parameters.values()
    open_ended = any(p.kind == p.VAR_KEYWORD for p in params)  # any --name is the command's
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    # options that are no boolean: fire would pass a bare --out in as True, and the command fail on it
    valued = {p.name for p in params if p.annotation is not p.empty and not _members(p.annotation) & _BOOL}
    args = list(args)
    if "--" in args:
        args = args[: len(args) - 1 - args[::-1].index("--")]
    given, texts, values, index = set(), {}, [], 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not is_flag(arg):
            values.append(arg)
            continue
        key, has_value, value = arg.lstrip("-").partition("=")
        key = key.replace("-", "_")
        bool_syntax = not has_value and (index == len(args) or is_flag(args[index]))
        if key in names:
            name = key
        elif bool_syntax and key.startswith("no") and key[2:] in names:
            name = key[2:]
        elif len(key) == 1 and any(n[0] == key for n in names):
            starting = [n for n in names if n[0] == key]
            if len(starting) > 1:
                return f"unimiss_monai {command}: option {arg} is ambiguous: {', '.join('--' + n for n in starting)}", {}
            name = starting[0]
        elif key in _FIRE_FLAGS or open_ended:
            name = None
        else:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean --{close[0]}?" if close else f"; it takes {', '.join('--' + n for n in names) or 'no option'}"
            return f"unimiss_monai {command}: unknown option {arg.partition('=')[0]}{hint}", {}
        if name in valued and bool_syntax:
            return f"unimiss_monai {command}: option {arg} needs a value (--{name} VALUE); was it left out?", {}
        if not has_value and not bool_syntax:
            value = args[index]
            index += 1  # the flag's value
        if name is not None:
            given.add(name)
            if has_value or not bool_syntax:
                texts[name] = value
    free = [n for n in positional if n not in given]
    if not varargs and len(values) > len(free):
        return f"unimiss_monai {command}: unexpected argument {values[len(free)]!r}", {}
    texts.update(zip(free, values))
    return None, texts


def with_boolean_options(command: str, func: Callable) -> Callable:
    """``func`` with its boolean options read as booleans.

    fire hands ``--swinunetr false`` over as the string ``"false"``, which Python counts as true, so the option would
    silently stay on. Options declared ``bool`` (or ``bool | str``, a boolean a caller may give as text) with a
    boolean default take true/false, yes/no, 1/0 (any case); anything else stops the command with one line naming
    the option before it runs.
    """
    from unimiss_monai.utils.args import as_bool

    signature = inspect.signature(func)
    names = {p.name for p in signature.parameters.values() if isinstance(p.default, bool) and _is_boolean(p.annotation)}
    if not names:
        return func

    @functools.wraps(func)
    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)  # fire passes some options by position
        for name in names & bound.arguments.keys():
            try:
                bound.arguments[name] = as_bool(bound.arguments[name], name)
            except ValueError:
                print(f"unimiss_monai {command}: --{name} is {bound.arguments[name]!r}, not a boolean; use true/false, "
                      f"yes/no or 1/0, or --{name} / --no{name}", file=sys.stderr)
                raise SystemExit(2) from None  # a usage error, as an unknown option is
        return func(*bound.args, **bound.kwargs)

    return call


# what a union of these may be made of to count as text: a string, a path, or nothing
_TEXT_TYPES = {"str", "None", "NoneType", "os.PathLike", "PathLike", "Path", "pathlib.Path", "<class 'str'>"}
_BOOL = {"bool", "<class 'bool'>"}


def _members(annotation) -> set[str]:
    """The types of a union annotation as text (``{"str", "None"}`` for ``str | None`` or ``Optional[str]``); under
    postponed evaluation the annotation is its source text."""
    text = re.sub(r"^(typing\.)?Optional\[(.*)\]$", r"\2 | None", str(annotation).replace("typing.Union[", "Union["))
    text = re.sub(r"^Union\[(.*)\]$", lambda m: m.group(1).replace(",", "|"), text)
    return {m.strip() for m in text.split("|")}


def _is_text(annotation) -> bool:
    """Whether a parameter annotated ``annotation`` takes text: ``str``, optionally with paths or ``None``
    (``str | None``, ``Optional[str]``, ``str | os.PathLike``)."""
    members = _members(annotation)
    return bool(members & {"str", "<class 'str'>"}) and members <= _TEXT_TYPES


def _is_boolean(annotation) -> bool:
    """Whether a parameter annotated ``annotation`` is a boolean: ``bool``, or ``bool | str`` (a boolean its command
    also takes as text from Python callers)."""
    members = _members(annotation)
    return bool(members & _BOOL) and members <= _BOOL | {"str", "<class 'str'>"}


def _same_text(parsed, text: str) -> bool:
    """Whether fire's ``parsed`` value of ``text`` is that text: the same string, the string inside the quotes typed to
    tell fire "a string" (``'"0.10"'``), or ``None`` typed as ``None``. Otherwise (a number, a list, or ``a#b`` read
    as ``a`` and a comment) the text is what was meant."""
    if parsed is None:
        return text == "None"
    if not isinstance(parsed, str):
        return False
    quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
    return parsed == (text[1:-1] if quoted else text)


def with_text_options(func: Callable, texts: dict[str, str]) -> Callable:
    """``func`` with its text options given as typed on the command line.

    fire parses every value as a Python literal, so ``--version 0.10`` reaches the command as the float ``0.1`` (and
    ``1.10`` as ``1.1``), a different release, a folder named ``2024`` as the integer 2024, and ``run#2`` as ``run``
    (``#`` starts a Python comment). Parameters declared ``str`` (or a path: ``str | os.PathLike``, either of them
    optional) get the text typed for them (``texts``, from :func:`read_options`: by name, short name or position)
    instead of fire's parse, unless that parse only took off the quotes typed around it or read ``None``; a leading
    ``~`` is the home folder, as the shell makes it of an unquoted path (quoted, it made a folder named ``~``).
    """
    signature = inspect.signature(func)
    raw = {p.name: texts[p.name] for p in signature.parameters.values()
           if p.name in texts and _is_text(p.annotation)}
    if not raw:
        return func

    @functools.wraps(func)
    def call(*a, **kw):
        bound = signature.bind(*a, **kw)
        for name, text in raw.items():
            if name in bound.arguments and not _same_text(bound.arguments[name], text):
                bound.arguments[name] = text
            if isinstance(bound.arguments.get(name), str) and bound.arguments[name].startswith("~"):
                bound.arguments[name] = os.path.expanduser(bound.arguments[name])
        return func(*bound.args, **bound.kwargs)

    return call


def _option_of(bound: inspect.BoundArguments | None, *paths: Path) -> tuple[str, str] | None:
    """The parameter of ``bound`` (name, value as given) whose path is one of ``paths`` or lies inside one, the first
    of ``paths`` first."""
    given = [(name, value, Path(os.fsdecode(value)).expanduser().absolute())
             for name, value in (bound.arguments.items() if bound is not None else ())
             if isinstance(value, (str, os.PathLike)) and str(value)]
    for path in paths:
        for name, value, where in given:
            if where == path or path in where.parents:
                return name, os.fsdecode(value)
    return None


def _path_problem(command: str, err: OSError, bound: inspect.BoundArguments | None) -> str | None:
    """One line for an ``OSError`` that says a file stands where a folder has to be (``[Errno 17] File exists``
    from ``mkdir``, ``[Errno 20] Not a directory``) or a folder where a file has to be (``[Errno 21] Is a
    directory``): the path, the option it came from, and what to do; ``None`` for any other error."""
    if err.errno not in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR) or not err.filename:
        return None
    path = Path(os.fsdecode(err.filename)).expanduser().absolute()
    # the writers refuse a folder given for an output up front (check_output_file); this names the option of a
    # folder given for a file the command reads
    if err.errno == errno.EISDIR:
        if not path.is_dir():
            return None
        found = _option_of(bound, path)
        given = f"--{found[0]} {found[1]}" if found else str(path)
        return f"{command}: {given} is a folder, not a file: give the path of a file (a new name inside it, or elsewhere)"
    from unimiss_monai.utils.paths import file_in_the_way

    blocker = file_in_the_way(path)
    if blocker is None:
        return None
    found = _option_of(bound, blocker, path)
    if found is None:
        return f"{command}: {blocker} is a file, not a folder; move that file away or choose another path"
    name, value = found
    where = "" if Path(value).expanduser().absolute() == blocker else f": {blocker}"
    return f"{command}: --{name} {value}{where} is a file, not a folder; move that file away or choose another --{name}"


def with_path_errors(command: str, func: Callable) -> Callable:
    """``func`` with a file where a folder has to be, or a folder where a file has to be, said in one line.

    ``Path.mkdir`` of an output folder that is a file says ``[Errno 17] File exists: 'x'``, neither the option nor
    what to do; a file inside a file ``[Errno 20] Not a directory`` and a folder given for a file ``[Errno 21] Is a
    directory``, both with a traceback. These become a ``FileExistsError`` naming the option whose path it is (or
    lies under) and the fix, which the error hook prints as one line; every other error is left as it is.
    """
    signature = inspect.signature(func)

    @functools.wraps(func)
    def call(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except OSError as err:
            try:
                bound = signature.bind_partial(*args, **kwargs)
                bound.apply_defaults()
            except TypeError:
                bound = None
            problem = _path_problem(command, err, bound)
            if problem is None:
                raise
            raise FileExistsError(problem) from err

    return call


def printed_only(func: Callable) -> Callable:
    """``func`` whose returned mapping stays with Python callers: each command returning one prints its own summary,
    which fire would otherwise follow with a ``key: value`` dump of the same facts."""
    return functools.wraps(func)(lambda *args, **kwargs: None if isinstance(r := func(*args, **kwargs), dict) else r)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning of this package as ``warning: <message>``; the source line Python prints under it is ours, not the
    user's to act on. Other libraries' warnings keep Python's form, which points at their code."""
    from unimiss_monai.utils.errors import in_package_code  # as the error hook tells the package's code

    ours = in_package_code(str(filename))  # a text test: a pseudo-file ("<string>") is never resolved
    return f"warning: {message}\n" if ours else _PYTHON_WARNING_FORMAT(message, category, filename, lineno, line)


_PYTHON_WARNING_FORMAT = warnings.formatwarning


def main(argv: list[str] | None = None) -> None:
    import fire

    from unimiss_monai.utils.errors import install_error_hook

    install_error_hook()  # a wrong path or a refused file: one line on stderr, not a traceback
    warnings.formatwarning = _one_line_warning
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):  # which code a bundle runs on: its metadata requires a version
        import unimiss_monai

        print(f"unimiss_monai {unimiss_monai.__version__}")
        return
    if args and args[0] in COMMANDS:
        func = _load(args[0])
        command = expand_short_flags(func, args[1:])  # the short flags --help lists mean what it says
        problem, texts = read_options(args[0], func, command)
        if problem:
            print(problem, file=sys.stderr)
            raise SystemExit(2)
        flags = command[: len(command) - 1 - command[::-1].index("--")] if "--" in command else command
        if {"--help", "-h"} & set(flags) and not {"help", "h"} & set(inspect.signature(func).parameters):
            command = ["--", "--help"]  # fire runs the command first when --help is not first; after "--" it is
            # fire's own flag, shown without a line quoting a command name with a space in it twice
        # import only the command that runs, and let fire document its real signature
        func = printed_only(with_text_options(with_boolean_options(args[0], with_path_errors(args[0], func)), texts))
        fire.Fire(func, command=command, name=f"unimiss_monai {args[0]}")
        return
    if args and not args[0].startswith("-"):
        close = difflib.get_close_matches(args[0], COMMANDS, n=1)
        hint = f"; did you mean {close[0]}? Commands: " if close else "; choose one of: "
        print(f"unimiss_monai: unknown command {args[0]!r}{hint}{', '.join(sorted(COMMANDS))}", file=sys.stderr)
        raise SystemExit(2)  # a usage error, as an unknown option is
    fire.Fire({name: _lazy(name) for name in COMMANDS}, command=args, name="unimiss_monai")


if __name__ == "__main__":
    main()
