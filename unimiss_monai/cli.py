"""Command line: ``python -m unimiss_monai <command> [--flag value ...]`` (powered by ``fire``).

Each command lives in the module that owns the capability; this file only maps names to callables and imports
them lazily, so ``python -m unimiss_monai --help`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

# command name -> "module:function"
COMMANDS: dict[str, str] = {
    "bench-pretrain": "unimiss_monai.benchmarks.pretrain:bench_pretrain",
    "samples": "unimiss_monai.data.samples:samples",
    "official-datalist": "unimiss_monai.data.official_layout:official_datalist",
    "label-efficiency": "unimiss_monai.benchmarks.label_efficiency:label_efficiency",
    "convert-checkpoint": "unimiss_monai.networks.convert:convert_checkpoint",
    "publish-pretrained": "unimiss_monai.networks.publish:publish_pretrained",
    "bench-backbone": "unimiss_monai.benchmarks.backbone:bench_backbone",
    "bench-drr": "unimiss_monai.benchmarks.drr:bench_drr",
    "bench-infer": "unimiss_monai.benchmarks.inference:bench_infer",
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


def main(argv: list[str] | None = None) -> None:
    import sys

    import fire

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        # import only the command that runs, and let fire document its real signature
        fire.Fire(_load(args[0]), command=args[1:], name=f"unimiss_monai {args[0]}")
        return
    if args and not args[0].startswith("-"):
        raise SystemExit(f"unimiss_monai: unknown command {args[0]!r}; choose one of: {', '.join(sorted(COMMANDS))}")
    fire.Fire({name: _lazy(target) for name, target in COMMANDS.items()}, command=args, name="unimiss_monai")


if __name__ == "__main__":
    main()
