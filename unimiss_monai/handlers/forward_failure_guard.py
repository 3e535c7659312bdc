"""Inference past a case whose network forward fails: the case is flagged in its batch, the others go on."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from unimiss_monai.data.tolerant import CASE_KEY, FAILED_KEY
from unimiss_monai.utils.errors import case_failure_reason

logger = logging.getLogger(__name__)

__all__ = ["ForwardFailureGuard", "guard_forward"]


class ForwardFailureGuard:
    """Wrap an evaluator's inferer so that a case whose forward pass fails is flagged in the batch, not fatal.

    The batch must come from :class:`~unimiss_monai.data.TolerantDataset` (it carries ``case`` and ``failed``). When
    the batched call fails, each case is retried alone so only the cases that fail are flagged; they get zeros as
    prediction (the writers skip flagged cases). Without ``case``/``failed`` in the batch the error is raised as before.

    Args:
        inferer: the evaluator's inferer, called as ``inferer(inputs, network, *args, **kwargs)``.
        engine: the evaluator, whose ``state.batch`` is the collated batch being run.
    """

    def __init__(self, inferer: Callable, engine) -> None:
        self.inferer, self.engine = inferer, engine

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs):
        """inputs: (B, C, *spatial) -> the inferer's output, with zeros in place of the cases that failed."""
        try:
            return self.inferer(inputs, network, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - one bad case is reported, the others go on
            batch = self.engine.state.batch
            if not (isinstance(batch, dict) and isinstance(batch.get(FAILED_KEY), list) and isinstance(batch.get(CASE_KEY), list)):
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
        case = batch[CASE_KEY][index]
        reason = case_failure_reason(err, str(case))
        logger.error("inference: %s failed in the network forward: %s", case, reason)
        batch[FAILED_KEY][index] = batch[FAILED_KEY][index] or f"network forward: {reason}"


def guard_forward(engine) -> None:
    """Wrap ``engine.inferer`` in a :class:`ForwardFailureGuard` (once; engines without an inferer are left alone).

    Installed at ``Events.STARTED`` by the inference handlers, because MONAI evaluators set their inferer only after
    attaching the handlers.
    """
    inferer = getattr(engine, "inferer", None)
    if inferer is not None and not isinstance(inferer, ForwardFailureGuard):
        engine.inferer = ForwardFailureGuard(inferer, engine)
