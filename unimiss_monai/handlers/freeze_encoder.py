"""Freeze a pretrained encoder for the first epochs of fine-tuning, then train it with the rest of the network.

A randomly initialised decoder/head sends large, noisy gradients into the encoder at the start of fine-tuning, which
can wash out what self-supervised pretraining learnt; keeping the encoder fixed until the head has settled avoids that.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from unimiss_monai.utils.ema import unwrap_model

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["FreezeEncoder", "set_encoder_trainable"]

logger = logging.getLogger(__name__)


def set_encoder_trainable(network: torch.nn.Module, trainable: bool, attr: str = "encoder") -> int:
    """Set ``requires_grad`` on every parameter of ``network.<attr>`` and return how many tensors changed.

    Uses the network's own ``freeze_encoder(bool)`` when it has one, so a network can decide what "encoder" means.

    Args:
        network: the model, possibly wrapped in ``DistributedDataParallel``.
        trainable: ``False`` freezes, ``True`` unfreezes.
        attr: name of the encoder sub-module. Defaults to ``"encoder"``.

    Raises:
        AttributeError: the network has no sub-module ``attr``.
    """
    net = unwrap_model(network)
    encoder = getattr(net, attr, None)
    if not isinstance(encoder, torch.nn.Module):
        raise AttributeError(
            f"FreezeEncoder: {type(net).__name__} has no sub-module {attr!r}; pass encoder_attr=<name of the encoder "
            "attribute> or set freeze_encoder_epochs to 0"
        )
    params = list(encoder.parameters())
    changed = sum(p.requires_grad != trainable for p in params)
    if hasattr(net, "freeze_encoder") and callable(net.freeze_encoder):
        net.freeze_encoder(not trainable)
    else:
        for p in params:
            p.requires_grad_(trainable)
    return changed


class FreezeEncoder:
    """Ignite handler: keep ``network.encoder`` frozen for epochs ``1..epochs``, train it from epoch ``epochs + 1``.

    The state is set at the start of every epoch from ``engine.state.epoch``, so resuming from a checkpoint lands in
    the right phase. Frozen parameters get no gradient, so optimisers (SGD, Adam, AdamW) leave them untouched. Under
    ``DistributedDataParallel`` a frozen encoder needs ``find_unused_parameters=True``.

    Args:
        network: the network being trained (its ``encoder`` attribute is frozen).
        epochs: number of epochs to keep the encoder frozen; ``0`` disables the handler.
        encoder_attr: name of the encoder sub-module. Defaults to ``"encoder"``.

    Examples::

        FreezeEncoder(network, epochs=5).attach(trainer)
    """

    def __init__(self, network: torch.nn.Module, epochs: int = 0, encoder_attr: str = "encoder") -> None:
        if int(epochs) != epochs or epochs < 0:
            raise ValueError(f"FreezeEncoder: epochs must be a non-negative integer, got {epochs!r}")
        self.network = network
        self.epochs = int(epochs)
        self.encoder_attr = encoder_attr
        self.frozen: bool | None = None

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        if self.epochs == 0:
            return
        engine.add_event_handler(Events.STARTED, self._warn_if_never_trained)
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def _warn_if_never_trained(self, engine: Engine) -> None:
        # a run no longer than the frozen epochs trains its decoder or head alone: a linear probe of pretrained
        # weights, which may be meant; of a random encoder (no pretrained_path), a model that cannot learn much
        if self.epochs >= (engine.state.max_epochs or 0) > engine.state.epoch:
            logger.warning("FreezeEncoder: the encoder stays frozen for the whole run (freeze_encoder_epochs %d >= "
                           "max_epochs %d): only the rest of the network trains, on the encoder it started from, "
                           "random without pretrained weights; lower --freeze_encoder_epochs or raise --max_epochs to "
                           "train the encoder too", self.epochs, engine.state.max_epochs)

    def __call__(self, engine: Engine) -> None:
        freeze = engine.state.epoch <= self.epochs
        if freeze == self.frozen:
            return
        changed = set_encoder_trainable(self.network, not freeze, self.encoder_attr)
        self.frozen = freeze
        logger.info(
            "FreezeEncoder: epoch %d: encoder %s (%d parameter tensors changed)",
            engine.state.epoch, "frozen" if freeze else "trainable", changed,
        )
