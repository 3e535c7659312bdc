"""A small record saved next to the weights, so that ``models/model.pt`` keeps the model-zoo layout
``{"model": state_dict, "info": {...}}``.

Ignite's checkpoint writer unwraps a save dict of a single entry and stores the bare state dict; a second entry keeps
the ``model`` key, and this one also says which bundle, variant and classes the weights belong to, and the settings
its inputs were prepared with (``settings``: spacing, window, image size), which evaluation and inference check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


def _comparable(value: Any) -> Any:
    """Numbers and number lists as floats, true/false words as booleans: ``--pixdim [5,5,5]`` arrives as ints,
    ``--luminance false`` as a word, a number from a config expression may as ``"0.01"``."""
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in ("true", "false")):
        return value if isinstance(value, bool) else value.strip().lower() == "true"
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def settings_mismatch(recorded: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> str:
    """The settings a trained model was trained with (its ``info["settings"]``) that this run sets otherwise, as
    ``"pixdim [5.0, 5.0, 5.0] (this run: [1.5, 1.5, 2.5])"`` joined by ``"; "``, or ``""`` (all equal, or either side
    records none: a model saved before the settings were recorded cannot be checked)."""
    if not recorded or not current:
        return ""
    diffs = []
    for key, theirs in recorded.items():
        if key in current and _comparable(theirs) != _comparable(current[key]):
            diffs.append(f"{key} {theirs} (this run: {current[key]})")
    return "; ".join(diffs)


def as_options(recorded: Mapping[str, Any], keys: list[str]) -> str:
    """``--pixdim [5, 5, 5] --roi_size [16, 64, 64]``: the command-line options that set ``keys`` as recorded."""
    return " ".join(f"--{k} {json.dumps(recorded[k]).replace(' ', '')}" for k in keys)
