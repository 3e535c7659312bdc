"""One page that shows a whole run of the chain: what ran, what came out and how good it is.

``report(run_dir)`` reads a run folder written by ``tools/demo.sh`` (the bundles' outputs plus ``demo_steps.json``)
and writes ``report.html`` (self-contained: images embedded, no network) and its Markdown twin ``report.md``.

``report`` is imported on first use (PEP 562): ``python -m unimiss_monai.report.steps``, which runs every step of
``tools/demo.sh``, imports this package first, and a package that imported ``steps`` itself (through the sections)
made Python warn that the module it is about to run is already loaded.
"""

from unimiss_monai.utils.lazy import lazy_exports

__all__ = ["report"]
__getattr__, __dir__ = lazy_exports(__name__, {"report": "unimiss_monai.report.command"})
