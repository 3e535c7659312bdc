"""Command line: ``python -m unimiss_monai <command> [--flag value ...]`` (powered by ``fire``).

Each command lives in the module that owns the capability; this file only maps names to callables and imports
them lazily, so ``python -m unimiss_monai --help`` stays fast.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Sequence

# command name -> "module:function"
COMMANDS: dict[str, str] = {
    "bench-pretrain": "unimiss_monai.benchmarks.pretrain:bench_pretrain",
    "samples": "unimiss_monai.data.samples:samples",
    "report": "unimiss_monai.report:report",
    "official-datalist": "unimiss_monai.data.official_layout:official_datalist",
    "label-efficiency": "unimiss_monai.benchmarks.label_efficiency:label_efficiency",
    "convert-checkpoint": "unimiss_monai.networks.convert:convert_checkpoint",
    "publish-pretrained": "unimiss_monai.networks.publish:publish_pretrained",
    "bench-backbone": "unimiss_monai.benchmarks.backbone:bench_backbone",
    "bench-drr": "unimiss_monai.benchmarks.drr:bench_drr",
    "bench-drr-cases": "unimiss_monai.benchmarks.drr_cases:bench_drr_cases",
    "bench-infer": "unimiss_monai.benchmarks.inference:bench_infer",
    "package-bundle": "unimiss_monai.release.package:package_bundle",
    "release-official": "unimiss_monai.release.official:release_official",
    "download": "unimiss_monai.release.download:download",
    "verify-bundles": "unimiss_monai.release.verify:verify_bundles",
}


def _lazy(target: str) -> Callable:
    module_name, func_name = target.split(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module_name), func_name)(*args, **kwargs)

    call.__name__ = func_name
    call.__doc__ = f"See {module_name}.{func_name} (``python -m unimiss_monai <command> --help`` shows its arguments)."
    return call


def _load(name: str) -> Callable:
    module_name, func_name = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


# fire's own flags, which it also accepts before the "--" separator
_FIRE_FLAGS = {"help", "h", "verbose"}


def _is_flag(arg: str) -> bool:
    # fire's rule: a leading hyphen, except a negative number
    return arg.startswith("--") or re.match(r"^-[a-zA-Z]", arg) is not None


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
    args = list(args)
    if "--" in args:
        args = args[: len(args) - 1 - args[::-1].index("--")]
    given, texts, values, index = set(), {}, [], 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not _is_flag(arg):
            values.append(arg)
            continue
        key, has_value, value = arg.lstrip("-").partition("=")
        key = key.replace("-", "_")
        bool_syntax = not has_value and (index == len(args) or _is_flag(args[index]))
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
    silently stay on. Options declared ``bool`` with a boolean default take true/false, yes/no, 1/0 (any case);
    anything else stops the command with one line before it runs.
    """
    from unimiss_monai.utils.args import as_bool

    signature = inspect.signature(func)
    names = {p.name for p in signature.parameters.values()
             if isinstance(p.default, bool) and str(p.annotation) in ("bool", "<class 'bool'>")}
    if not names:
        return func

    @functools.wraps(func)
    def call(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)  # fire passes some options by position
        for name in names & bound.arguments.keys():
            try:
                bound.arguments[name] = as_bool(bound.arguments[name], name)
            except ValueError:
                raise SystemExit(f"unimiss_monai {command}: --{name} is {bound.arguments[name]!r}, not a boolean; use "
                                 f"true/false, yes/no or 1/0, or --{name} / --no{name}") from None
        return func(*bound.args, **bound.kwargs)

    return call


# what a union of these may be made of to count as text: a string, a path, or nothing
_TEXT_TYPES = {"str", "None", "NoneType", "os.PathLike", "PathLike", "Path", "pathlib.Path", "<class 'str'>"}


def _is_text(annotation) -> bool:
    """Whether a parameter annotated ``annotation`` takes text: ``str``, optionally with paths or ``None``
    (``str | None``, ``Optional[str]``, ``str | os.PathLike``); under postponed evaluation the annotation is its
    source text."""
    text = re.sub(r"^(typing\.)?Optional\[(.*)\]$", r"\2 | None", str(annotation).replace("typing.Union[", "Union["))
    text = re.sub(r"^Union\[(.*)\]$", lambda m: m.group(1).replace(",", "|"), text)
    members = {m.strip() for m in text.split("|")}
    return bool(members & {"str", "<class 'str'>"}) and members <= _TEXT_TYPES


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
    instead of fire's parse, unless that parse only took off the quotes typed around it or read ``None``.
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
        return func(*bound.args, **bound.kwargs)

    return call


def main(argv: list[str] | None = None) -> None:
    import fire

    from unimiss_monai.utils.errors import install_error_hook

    install_error_hook()  # a wrong path or a refused file: one line on stderr, not a traceback
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        func = _load(args[0])
        problem, texts = read_options(args[0], func, args[1:])
        if problem:
            print(problem, file=sys.stderr)
            raise SystemExit(2)
        command = args[1:]
        flags = command[: len(command) - 1 - command[::-1].index("--")] if "--" in command else command
        if {"--help", "-h"} & set(flags) and not {"help", "h"} & set(inspect.signature(func).parameters):
            command = ["--help"]  # fire would run the command first when --help is not the first argument
        # import only the command that runs, and let fire document its real signature
        func = with_text_options(with_boolean_options(args[0], func), texts)
        fire.Fire(func, command=command, name=f"unimiss_monai {args[0]}")
        return
    if args and not args[0].startswith("-"):
        close = difflib.get_close_matches(args[0], COMMANDS, n=1)
        hint = f"; did you mean {close[0]}? Commands: " if close else "; choose one of: "
        print(f"unimiss_monai: unknown command {args[0]!r}{hint}{', '.join(sorted(COMMANDS))}", file=sys.stderr)
        raise SystemExit(2)  # a usage error, as an unknown option is
    fire.Fire({name: _lazy(target) for name, target in COMMANDS.items()}, command=args, name="unimiss_monai")


if __name__ == "__main__":
    main()
