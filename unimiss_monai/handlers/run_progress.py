"""One progress bar over a whole training run, with its ETA (ignite's ``ProgressBar`` restarts every epoch)."""

from __future__ import annotations

from tqdm.auto import tqdm

__all__ = ["RunProgress"]


class RunProgress:
    """Attach to an ignite engine: a tqdm bar of ``max_epochs * epoch_length`` iterations that shows the latest loss.

    No handler for ``EXCEPTION_RAISED``: registering one would change how ignite reports the run's errors; the
    package's error printer closes open bars (:mod:`unimiss_monai.utils.errors`).

    The last of ``train#handlers`` in every fine-tuning bundle's ``train.json`` (rank 0 only under the multi-GPU
    overlays).

    Args:
        desc: text before the bar.
    """

    def __init__(self, desc: str = "training") -> None:
        self.desc = desc
        self._bar: tqdm | None = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._open)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._step)
        engine.add_event_handler(Events.COMPLETED, self._close)

    def _open(self, engine) -> None:
        state = engine.state
        total = int(state.max_epochs) * int(state.epoch_length) if state.epoch_length else None
        # a resumed run starts part-way: the bar starts where the run does
        self._bar = tqdm(total=total, initial=int(state.iteration), desc=self.desc, unit="it", dynamic_ncols=True)

    def _step(self, engine) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        output = engine.state.output
        loss = output[0].get("loss") if isinstance(output, list) and output and isinstance(output[0], dict) else (
            output.get("loss") if isinstance(output, dict) else None)
        if loss is not None:
            self._bar.set_postfix(epoch=engine.state.epoch, loss=f"{float(loss):.4f}", refresh=False)

    def _close(self, engine) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
