"""Seed each epoch's shuffle and augmentations from (seed, epoch, rank), so a resumed run draws what an uninterrupted
one would have."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd

from unimiss_monai.utils.seeds import epoch_seed

__all__ = ["EpochSeed", "epoch_seed"]


class EpochSeed:
    """Ignite handler: at the start of every epoch, seed the engine's data loader from
    :func:`~unimiss_monai.utils.seeds.epoch_seed` and start the epoch's pass over it.

    MONAI's random transforms keep their own generators, which advance with every sample; a run restarted from a
    checkpoint would replay them from the start. Seeding at each epoch makes the epoch's draws depend only on
    ``(seed, epoch, rank)``: the loader's ``generator`` (the shuffle order of its ``RandomSampler`` and the seeds of its
    worker processes, which MONAI's ``worker_init_fn`` hands to the transforms) and, for ``num_workers=0``, the
    transforms of the dataset in this process. A ``DistributedSampler`` is seeded from its epoch by MONAI's trainer.
    The pass starts here (``engine.set_data``) because ignite would otherwise first exhaust the previous epoch's
    iterator, which draws once more from the generator in an uninterrupted run but not in a resumed one. Checkpoints
    must therefore be taken at epoch ends (``TrainingCheckpoint(epoch_level=True)``).

    Args:
        seed: base seed; ``None`` (default) takes the run's seed, ``torch.initial_seed()`` when the run starts (what
            ``set_determinism(seed=...)`` set), so the seed a run is given drives its data draws too.

    Examples::

        "dataloader": {"_target_": "DataLoader", ..., "shuffle": true, "generator": "$torch.Generator()"}
        {"_target_": "unimiss_monai.handlers.EpochSeed"}
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = None if seed is None else int(seed)
        self._base = self.seed

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._take_run_seed)
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def _take_run_seed(self, engine: Engine) -> None:
        self._base = torch.initial_seed() if self.seed is None else self.seed

    def __call__(self, engine: Engine) -> None:
        loader = engine.state.dataloader
        seed = epoch_seed(self._base, engine.state.epoch, getattr(engine.state, "rank", 0))
        if getattr(loader, "generator", None) is not None:
            loader.generator.manual_seed(seed)
        set_rnd(getattr(loader, "dataset", loader), seed)
        engine.set_data(loader)
