"""MONAI's ``TensorBoardStatsHandler``, opening its event file when attached to an engine rather than when built."""

from __future__ import annotations

from monai.handlers import TensorBoardStatsHandler as _MonaiTensorBoardStatsHandler
from monai.utils import optional_import

SummaryWriter, _ = optional_import("torch.utils.tensorboard", name="SummaryWriter")

__all__ = ["TensorBoardStatsHandler"]

_NOT_OPENED = object()  # stands in for the writer until attach()


class TensorBoardStatsHandler(_MonaiTensorBoardStatsHandler):
    """MONAI's ``TensorBoardStatsHandler`` (same arguments) whose own ``SummaryWriter`` is opened in :meth:`attach`.

    Under ``torchrun`` every rank builds a bundle's handlers and
    :func:`~unimiss_monai.utils.dist.rank_zero_handlers` attaches the ones that write on rank 0 alone. MONAI's
    handler opens its writer, and so an event file, when built: each other rank left an empty event file in
    ``log_dir``, which TensorBoard lists as runs without data. A ``summary_writer`` given is used as MONAI uses it.
    """

    def __init__(self, summary_writer=None, log_dir: str = "./runs", **kwargs) -> None:
        super().__init__(summary_writer=_NOT_OPENED if summary_writer is None else summary_writer, log_dir=log_dir,
                         **kwargs)
        self.internal_writer, self._log_dir = summary_writer is None, log_dir

    def attach(self, engine) -> None:
        if self._writer is _NOT_OPENED:
            self._writer = SummaryWriter(log_dir=self._log_dir)
        super().attach(engine)

    def close(self) -> None:
        if self._writer is not _NOT_OPENED:
            super().close()
