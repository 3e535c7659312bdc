"""Inference that outlives a bad case: a dataset that turns a load/preprocessing failure into a flagged placeholder,
and an inferer wrapper that does the same for a failure inside the network forward. The writers
(:class:`~unimiss_monai.engines.classification_inference.ClassProbabilityWriter`,
:class:`~unimiss_monai.engines.segmentation_inference.SegmentationWriter`,
:class:`~unimiss_monai.data.xray.InferenceSummary`) skip flagged cases and list them in their summaries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from monai.data import Dataset

logger = logging.getLogger(__name__)

__all__ = ["ForwardFailureGuard", "TolerantDataset", "guard_forward", "root_cause"]


class TolerantDataset(Dataset):
    """A MONAI ``Dataset`` whose items carry ``case`` (the input path) and ``failed`` (``""`` or the error message).

    Args:
        data: items with an ``"image"`` path. transform: the preprocessing.
        placeholder_shape: (C, *spatial) of the zeros that stand in for a failed image (the network input size).
    """

    def __init__(self, data: Sequence[dict], transform: Callable | None, placeholder_shape: Sequence[int]) -> None:
        super().__init__(data=data, transform=transform)
        self.placeholder_shape = tuple(int(s) for s in placeholder_shape)

    def _transform(self, index: int):
        item = self.data[index]
        case = str(item.get("image", f"item {index}"))
        try:
            out = super()._transform(index)
        except Exception as err:  # noqa: BLE001 - any failure of one case is reported, the others go on
            reason = root_cause(err)
            if case not in reason:  # a reader's own error may not say which file it was reading
                reason = f"{case}: {reason}"
            logger.error("inference: %s failed: %s", case, reason)
            return {"image": torch.zeros(self.placeholder_shape), "case": case, "failed": reason}
        return {**out, "case": case, "failed": ""}


def root_cause(err: BaseException) -> str:
    # MONAI wraps transform errors in "applying transform ..." RuntimeErrors; the innermost one says what is wrong
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}".splitlines()[0]


class ForwardFailureGuard:
    """Wrap an evaluator's inferer so that a case whose forward pass fails is flagged in the batch, not fatal.

    The batch must come from :class:`TolerantDataset` (it carries ``case`` and ``failed``). When the batched call
    fails, each case is retried alone so only the cases that fail are flagged; they get zeros as prediction (the
    writers skip flagged cases). Without ``case``/``failed`` in the batch the error is raised as before.

    Args:
        inferer: the evaluator's inferer, called as ``inferer(inputs, network, *args, **kwargs)``.
        engine: the evaluator, whose ``state.batch`` is the collated batch being run.
    """

    def __init__(self, inferer: Callable, engine) -> None:
        self.inferer, self.engine = inferer, engine

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs):
        try:
            return self.inferer(inputs, network, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - one bad case is reported, the others go on
            batch = self.engine.state.batch
            if not (isinstance(batch, dict) and isinstance(batch.get("failed"), list) and isinstance(batch.get("case"), list)):
                raise
            if inputs.shape[0] == 1:
                self._flag(batch, 0, err)
                return torch.zeros((1, 1), device=inputs.device)
        outputs: list[torch.Tensor | None] = []
        for i in range(inputs.shape[0]):
            try:
                outputs.append(self.inferer(inputs[i : i + 1], network, *args, **kwargs))
            except Exception as err:  # noqa: BLE001
                self._flag(batch, i, err)
                outputs.append(None)
        good = next((o for o in outputs if o is not None), None)
        if good is None:
            return torch.zeros((inputs.shape[0], 1), device=inputs.device)
        return torch.cat([torch.zeros_like(good) if o is None else o for o in outputs])

    @staticmethod
    def _flag(batch: dict, index: int, err: BaseException) -> None:
        reason = f"{batch['case'][index]}: {root_cause(err)}"
        logger.error("inference: %s failed in the network forward: %s", batch["case"][index], reason)
        batch["failed"][index] = batch["failed"][index] or f"network forward: {reason}"


def guard_forward(engine) -> None:
    """Wrap ``engine.inferer`` in a :class:`ForwardFailureGuard` (once; engines without an inferer are left alone)."""
    inferer = getattr(engine, "inferer", None)
    if inferer is not None and not isinstance(inferer, ForwardFailureGuard):
        engine.inferer = ForwardFailureGuard(inferer, engine)
