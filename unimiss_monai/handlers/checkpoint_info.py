"""A small record saved next to the weights, so that ``models/model.pt`` keeps the model-zoo layout
``{"model": state_dict, "info": {...}}``.

Ignite's checkpoint writer unwraps a save dict of a single entry and stores the bare state dict; a second entry keeps
the ``model`` key, and this one also says which bundle, variant and classes the weights belong to.
"""

from __future__ import annotations

from typing import Any


class CheckpointInfo:
    """Plain-value metadata with the ``state_dict`` protocol ignite checkpoints expect.

    Examples::

        "save_dict": {"model": "@network", "info": {"_target_": "unimiss_monai.handlers.CheckpointInfo",
                                                    "bundle": "unimiss_ct_segmentation", "variant": "@variant"}}
    """

    def __init__(self, **info: Any) -> None:
        self.info = {k: (list(v) if isinstance(v, tuple) else v) for k, v in info.items()}

    def state_dict(self) -> dict[str, Any]:
        return dict(self.info)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.info = dict(state)
