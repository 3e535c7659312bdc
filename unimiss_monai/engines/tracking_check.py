"""A start-up check that a tracking handler can read the pretraining trainer's output (one dict of floats)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_tracking_transform"]


def check_tracking_transform(handler: Any) -> None:
    """Fail at start-up, not after the first iteration, when an ``MLFlowHandler`` cannot read this trainer's output.

    MONAI's built-in ``--tracking mlflow`` settings read ``loss`` from a decollated list of dicts; this trainer's output
    is one dict of floats, on which that transform returns a tuple that MLflow cannot log.
    """
    transform = getattr(handler, "output_transform", None)
    if type(handler).__name__ != "MLFlowHandler" or not getattr(handler, "iteration_log", False) or transform is None:
        return
    try:
        sample = transform({"loss": 0.0})
    except Exception:  # noqa: BLE001 - a transform for other keys is the user's choice; it fails on its own terms
        return
    if sample is not None and not isinstance(sample, (int, float, dict, torch.Tensor)):
        raise ValueError(
            "MLFlowHandler output_transform gives a "
            f"{type(sample).__name__} for the pretraining output (a dict of floats); run with --tracking "
            "bundles/unimiss_pretraining/configs/mlflow_tracking.json, or set output_transform to "
            "unimiss_monai.handlers.scalar_outputs"
        )
