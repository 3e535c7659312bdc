"""The stand-ins of the label-efficiency study's tests: a runner whose scores depend on the arm, the subset and the
seed only, and the small design they run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unimiss_monai.benchmarks.label_efficiency.command import write_results
from unimiss_monai.benchmarks.label_efficiency.design import StudyDesign
from unimiss_monai.benchmarks.label_efficiency.study import build_results, run_study


class FakeRunner:
    """Scores that depend on the arm, the subset and the seed only; raises ``KeyboardInterrupt`` (a kill) before
    its ``stop_after``-th run."""

    def __init__(self, stop_after: int | None = None, fail: str | None = None):
        self.calls, self.stop_after, self.fail = [], stop_after, fail

    def __call__(self, spec, run_dir: Path) -> dict:
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(spec.run_id)
        if spec.run_id == self.fail:
            raise RuntimeError("out of memory\nsecond line")
        shared = np.random.default_rng([spec.seed, len(spec.indices)]).normal(0, 0.05)
        own = np.random.default_rng([spec.seed, len(spec.indices), len(spec.arm)]).normal(0, 0.005)
        gain = 0.05 if spec.arm == "pretrained" else 0.0
        return {"score": float(0.4 + 0.3 * spec.fraction + gain + shared + own), "report": "r.json"}


DESIGN = StudyDesign((0.1, 1.0), (0, 1, 2, 3, 4), ("scratch", "pretrained"))
META = {"bundle": "unimiss_cxr_segmentation", "metric": "Dice", "command": "python -m unimiss_monai label-efficiency"}
SETTINGS = {"scratch": {"lr": 1e-3}, "pretrained": {"lr": 1e-3, "weights_sha256": "ab"}}


def study_json(out: Path, runner) -> bytes:
    """Run the study with ``runner`` into ``out`` and write its results; the JSON's bytes."""
    records = run_study(DESIGN.runs(32), runner, out, SETTINGS)
    write_results(build_results(records, DESIGN, META), out)
    return (out / "label_efficiency.json").read_bytes()
