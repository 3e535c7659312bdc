"""One page that shows a whole run of the chain: what ran, what came out and how good it is.

``report(run_dir)`` reads a run folder written by ``tools/demo.sh`` (the bundles' outputs plus ``demo_steps.json``)
and writes ``report.html`` (self-contained: images embedded, no network) and its Markdown twin ``report.md``.
"""

from .command import report

__all__ = ["report"]
