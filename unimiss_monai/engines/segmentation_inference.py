"""Segmentation inference over a folder: list the inputs, write each label map on its input grid, survive bad cases.

Pairs with ``unimiss_monai.engines.tolerant_inference.TolerantDataset`` (a case whose loading or preprocessing
fails becomes a flagged placeholder): :class:`SegmentationWriter` maps every good prediction back onto its input grid
(MONAI ``Invertd`` through the preprocessing), writes it as NIfTI atomically, records failed cases (at load, in the
network forward or on writing) instead, and at the end writes ``summary.json`` and prints a summary that lists the
failures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unimiss_monai.data.writers import save_json, save_nifti
from unimiss_monai.engines.tolerant_inference import guard_forward, root_cause

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["SegmentationWriter", "find_segmentation_inputs"]

logger = logging.getLogger(__name__)


def find_segmentation_inputs(dataset_dir: str | os.PathLike, name: str = "ct_segmentation") -> list[dict[str, str]]:
    """``[{"image": path}]`` for every CT in ``dataset_dir``: NIfTI files and DICOM series folders, or the
    ``testing`` list of its ``datalist.json`` (a ``samples`` output resolves to its ``name`` data set first)."""
    from unimiss_monai.data import find_ct_cases, find_dataset

    return [{"image": str(case.image)} for case in find_ct_cases(find_dataset(dataset_dir, name))]


def _case_name(path: str) -> str:
    base = os.path.basename(str(path).rstrip("/"))
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


class SegmentationWriter:
    """Ignite handler: write ``<output_dir>/<case>_seg.nii.gz`` (uint8 label map on the input grid) per case.

    Each decollated output item holds ``pred`` (class probabilities or logits on the preprocessed grid) and ``image``
    (the preprocessed image, whose transform trace ``Invertd`` follows back); the matching batch item may hold
    ``case`` / ``failed`` (set by ``TolerantDataset``, or by ``guard_forward``, which attaching installs, when the
    network forward fails). Any error on one case is logged and recorded; the run goes on.

    Args:
        output_dir: output folder (created).
        transform: the inference preprocessing (a MONAI ``Compose``) to invert.
        class_names: foreground class names, written to ``summary.json``.
        invert_probabilities: invert the class probabilities (linear) and take the argmax on the input grid (smoother,
            ``C`` times the memory), instead of inverting the argmax with nearest-neighbour. Defaults to ``False``.
        postfix: file name suffix. Defaults to ``"_seg"``.
        output_transform: maps ``engine.state.output`` to the list of items. Defaults to identity.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        transform: Callable,
        class_names: Sequence[str] = (),
        invert_probabilities: bool = False,
        postfix: str = "_seg",
        output_transform: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        from monai.transforms import Invertd

        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.invert_probabilities = bool(invert_probabilities)
        self.postfix = postfix
        self.output_transform = output_transform
        self.invert = Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=not invert_probabilities)
        self.written: list[dict[str, Any]] = []
        self.failed: list[dict[str, str]] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        # a case whose forward pass fails is flagged in the batch, then recorded here as failed; installed at STARTED
        # because MONAI evaluators set their inferer only after attaching the handlers
        engine.add_event_handler(Events.STARTED, guard_forward)
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.summarise)

    def reset(self, engine: Engine | None = None) -> None:
        self.written, self.failed = [], []

    def write_item(self, item: dict[str, Any]) -> Path:
        """Invert one prediction onto its input grid and write it; returns the output path."""
        pred = item["pred"]
        if not torch.isfinite(torch.as_tensor(pred)).all():
            raise ValueError("the network output has non-finite values (NaN or Inf); check the input and the weights")
        if not self.invert_probabilities:
            pred = pred.argmax(0, keepdim=True).to(torch.float32) if pred.shape[0] > 1 else pred
        out = self.invert({"pred": pred, "image": item["image"]})["pred"]
        labels = out.argmax(0) if out.shape[0] > 1 else out[0].round()
        affine = np.asarray(out.affine, dtype=np.float64)
        case = _case_name(item.get("case") or out.meta.get("filename_or_obj", f"case_{len(self.written):04d}"))
        path = save_nifti(labels.cpu().numpy().astype(np.uint8), affine, self.output_dir / f"{case}{self.postfix}.nii.gz")
        self.written.append({"case": case, "output": str(path), "shape": list(labels.shape)})
        return path

    def update(self, engine: Engine) -> None:
        items = self.output_transform(engine.state.output)
        items = items if isinstance(items, list) else [items]
        # evaluators keep only image/label/pred in their output: "case"/"failed" come from the (decollated) batch
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch] * len(items)
        for item, source in zip(items, batch):
            case = str(source.get("case", "")) if isinstance(source, dict) else ""
            if isinstance(source, dict) and source.get("failed"):
                self.failed.append({"case": case, "error": str(source["failed"])})
                continue
            try:
                self.write_item({**item, "case": case or item.get("case", "")})
            except Exception as err:  # noqa: BLE001 - one bad case is reported, the others go on
                reason = root_cause(err)
                logger.error("segmentation: %s failed: %s", case, reason)
                self.failed.append({"case": case, "error": reason})

    def summarise(self, engine: Engine | None = None) -> dict[str, Any]:
        summary = {"classes": self.class_names, "written": self.written, "failed": self.failed}
        save_json(summary, self.output_dir / "summary.json")
        print(f"[segmentation] {len(self.written)} written, {len(self.failed)} failed -> {self.output_dir}", flush=True)
        for f in self.failed:
            print(f"[segmentation] FAILED {f['case']}: {f['error']}", flush=True)
        if not self.written:  # the work failed: the run must not exit 0
            raise RuntimeError(f"segmentation: no case was segmented ({len(self.failed)} failed, see above)")
        return summary
