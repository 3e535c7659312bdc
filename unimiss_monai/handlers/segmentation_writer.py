"""Segmentation inference output: each label map written on its input grid, a failed case marked instead."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unimiss_monai.data.case_names import NAME_KEY, CaseNames
from unimiss_monai.data.image_formats import split_image_name
from unimiss_monai.data.output_ledger import replacing_own
from unimiss_monai.data.tolerant import CASE_KEY, FAILED_KEY, batch_items, mark_failed
from unimiss_monai.data.writers import save_nifti
from unimiss_monai.handlers.forward_failure_guard import guard_forward
from unimiss_monai.handlers.inference_summary import OUTPUT_KEY
from unimiss_monai.utils.args import as_bool
from unimiss_monai.utils.errors import case_failure_reason

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["SegmentationWriter"]

logger = logging.getLogger(__name__)


class SegmentationWriter:
    """Ignite handler: write ``<output_dir>/<case>_seg.nii.gz`` (uint8 label map on the input grid) per case.

    Each decollated output item holds ``pred`` (class probabilities or logits on the preprocessed grid; a single
    channel is a foreground probability, labelled 1 above 0.5) and ``image``
    (the preprocessed image, whose transform trace ``Invertd`` follows back); the matching batch item may hold
    ``name`` (the case name that names the file, as
    :func:`~unimiss_monai.data.segmentation_inputs.find_segmentation_inputs` gives it; else the input's file name
    without its format) and ``case`` / ``failed`` (set by :class:`~unimiss_monai.data.TolerantDataset`, or by
    :func:`~unimiss_monai.handlers.guard_forward`, which attaching installs). A case that fails here (non-finite
    output, a failed write) is logged and marked failed in its batch item; the written path is recorded there too, so
    :class:`~unimiss_monai.handlers.InferenceSummary` (listed after this handler) reports both. The run goes on.
    A second input of the same case name (``a/scan.nii.gz`` after ``b/scan.nii.gz``) fails the same way, naming both
    inputs, instead of overwriting the first one's file; so does a file of that name in ``output_dir`` that this
    package did not write there (:mod:`unimiss_monai.data.output_ledger`).

    Args:
        output_dir: output folder (created).
        transform: the inference preprocessing (a MONAI ``Compose``) to invert.
        invert_probabilities: invert the class probabilities (linear) and take the argmax on the input grid (smoother,
            ``C`` times the memory), instead of inverting the argmax with nearest-neighbour. Defaults to ``False``.
        postfix: file name suffix. Defaults to ``"_seg"``.
        output_transform: maps ``engine.state.output`` to the list of items. Defaults to identity.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        transform: Callable,
        invert_probabilities: bool = False,
        postfix: str = "_seg",
        output_transform: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        from monai.transforms import Invertd

        self.output_dir = Path(output_dir)
        # as_bool: from the command line a value is a string, and bool("false") is True
        invert_probabilities = self.invert_probabilities = as_bool(invert_probabilities, "invert_probabilities")
        self.postfix = postfix
        self.output_transform = output_transform
        self.invert = Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=not invert_probabilities)
        self.written: list[dict[str, Any]] = []
        self._names = CaseNames()  # never two inputs of one run into one output file

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, guard_forward)
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)

    def reset(self, engine: Engine | None = None) -> None:
        self.written = []
        self._names.clear()

    def write_item(self, item: dict[str, Any]) -> Path:
        """Invert one prediction onto its input grid and write it; returns the output path.

        ``item["pred"]``: (C, *spatial) on the preprocessed grid; the file holds the (*input spatial) label map.
        """
        pred = item["pred"]
        if not torch.isfinite(torch.as_tensor(pred)).all():
            raise ValueError("the network output has non-finite values (NaN or Inf); check the input and the weights")
        classes = pred.shape[0]
        if classes > 1 and not self.invert_probabilities:
            pred = pred.argmax(0, keepdim=True).to(torch.float32)
        out = self.invert({"pred": pred, "image": item["image"]})["pred"]
        if classes == 1:  # a foreground probability: rounding would write 3 for 2.7 and wrap -2 to 254 in uint8
            labels = out[0] > 0.5
        else:  # class scores inverted linearly, or their argmax inverted with nearest neighbour
            labels = out.argmax(0) if out.shape[0] > 1 else out[0].round()
        affine = np.asarray(out.affine, dtype=np.float64)
        source = str(item.get(CASE_KEY) or out.meta.get("filename_or_obj", f"case_{len(self.written):04d}"))
        case = str(item.get(NAME_KEY) or split_image_name(source)[0])
        path = self.output_dir / f"{case}{self.postfix}.nii.gz"
        if clash := self._names.clash(case, source, f"{source} would overwrite {path}"):
            raise ValueError(clash)
        with replacing_own(path, self.output_dir):  # a file of that name of the user's fails the case, unreplaced
            path = save_nifti(labels.cpu().numpy().astype(np.uint8), affine, path)
        self._names.take(case, source)
        self.written.append({"case": case, "output": str(path), "shape": list(labels.shape)})
        return path

    def update(self, engine: Engine) -> None:
        items = self.output_transform(engine.state.output)
        items = items if isinstance(items, list) else [items]
        # evaluators keep only image/label/pred in their output: "case"/"failed" come from the (decollated) batch
        for item, source in zip(items, batch_items(engine.state.batch)):
            if source.get(FAILED_KEY):
                continue
            case = str(source.get(CASE_KEY, ""))
            try:
                named = {NAME_KEY: source[NAME_KEY]} if source.get(NAME_KEY) else {}
                source[OUTPUT_KEY] = str(self.write_item({**item, **named, CASE_KEY: case or item.get(CASE_KEY, "")}))
            except Exception as err:  # noqa: BLE001 - one bad case is reported, the others go on
                reason = case_failure_reason(err, case)
                logger.error("segmentation: %s failed: %s", case, reason)
                mark_failed(source, reason)
