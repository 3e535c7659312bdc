"""Tensors of a spatial dimension a pretraining run never trained, set aside before loading.

A MiT / MiT+ backbone holds a 2D and a 3D branch (stems, patch embeddings, position embeddings, attention
reductions) around shared blocks. A run over X-rays alone trains the 2D branch only; its 3D tensors stay at their
random initialisation, yet they have the right names and shapes and would load as pretrained. The export records the
dimensions trained (``info["trained_dims"]``, see ``StudentTeacher.export``); loading drops the other dimensions'
tensors, so a 3D model inflates its 3D branch from the trained 2D one (:mod:`unimiss_monai.networks.inflate`) and a
2D model meets its untrained 2D tensors as missing, which the loader refuses unless partial loading is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["set_aside_untrained"]

_DIM_PART = {2: re.compile(r"\.2d(\.|$)"), 3: re.compile(r"\.3d(\.|$)")}


def set_aside_untrained(
    state_dict: Mapping[str, torch.Tensor], info: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(state_dict without the never-trained tensors, {dropped key: why})``.

    Args:
        state_dict: checkpoint tensors.
        info: the checkpoint's ``info``; without a ``trained_dims`` list (an export of an earlier version, a converted
            official checkpoint) every tensor is kept.
    """
    trained = info.get("trained_dims")
    if not isinstance(trained, (list, tuple)):
        return dict(state_dict), {}
    untrained = [d for d in _DIM_PART if d not in trained]
    out, why = {}, {}
    for k, v in state_dict.items():
        dim = next((d for d in untrained if _DIM_PART[d].search(k)), None)
        if dim is None:
            out[k] = v
        else:
            why[k] = f"never trained: its pretraining saw no {'CT' if dim == 3 else '2D image'} (trained_dims {list(trained)})"
    return out, why
